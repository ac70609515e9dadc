package api

import (
	"errors"
	"net/http"
	"strings"
	"time"
)

// minRecordingRate is the slowest a client may take a recording at
// (bytes a second): a two-hour call's 230 MB is given an hour rather
// than the server's write timeout, which would cut it.
const minRecordingRate = 64 << 10

// getRecording serves GET /v1/cdrs/{id}/recording: the call's recording
// as a two-channel WAV file (leg A, whoever dialled vnum, left; leg B, the party vnum dialled, right), to
// the operator only. An unknown record, a call that was not recorded and
// a file no longer kept are 404 with a JSON error naming the record. A
// recording still being written (the call goes on) is served as far as it
// goes, a playable file. Ranges are honoured, so a large file can be
// fetched in parts.
func (s *server) getRecording(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	f, err := s.store.OpenRecording(r.Context(), s.opts.RecordingDir, id)
	if err != nil {
		return err
	}
	defer func() {
		if err := f.Close(); err != nil {
			s.log.Debug("admin api: closing a recording", "error", err)
		}
	}()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	until := time.Now().Add(s.opts.StreamIdle + time.Duration(info.Size()/minRecordingRate)*time.Second)
	if err := rc.SetWriteDeadline(until); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "audio/wav")
	h.Set("Content-Disposition", `attachment; filename="`+id+`.wav"`)
	// Evidence of a call: no cache between the operator and vnum keeps it.
	h.Set("Cache-Control", "no-store")
	http.ServeContent(&rangeErrors{ResponseWriter: w, s: s}, r, "", info.ModTime(), f)
	return nil
}

// rangeErrors answers the one error ServeContent writes itself, a Range
// the file cannot satisfy (416), as every error of the API is answered:
// {"error": ...} in JSON, not net/http's plain text.
type rangeErrors struct {
	http.ResponseWriter
	s       *server
	swallow bool // the plain-text body that follows the 416 is dropped
}

func (e *rangeErrors) WriteHeader(status int) {
	if status != http.StatusRequestedRangeNotSatisfiable {
		e.ResponseWriter.WriteHeader(status)
		return
	}
	e.swallow = true
	e.Header().Del("Content-Disposition")
	size := strings.TrimPrefix(e.Header().Get("Content-Range"), "bytes */")
	e.s.writeError(e.ResponseWriter, status, "range not satisfiable: the recording has "+size+" bytes")
}

func (e *rangeErrors) Write(b []byte) (int, error) {
	if e.swallow {
		return len(b), nil
	}
	return e.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (e *rangeErrors) Unwrap() http.ResponseWriter { return e.ResponseWriter }
