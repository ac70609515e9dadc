package api

import (
	"errors"
	"net/http"
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
	http.ServeContent(w, r, "", info.ModTime(), f)
	return nil
}
