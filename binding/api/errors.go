package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/protection"
)

// msgInternal is all a client learns of an unexpected failure; the cause
// goes to the log.
const msgInternal = "internal error"

// httpError is a request error that knows its status.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// errUnauthorized answers a /v1 call without the right bearer token.
var errUnauthorized = &httpError{status: http.StatusUnauthorized, msg: "missing or wrong bearer token"}

// badRequest is a 400 error: a body or parameter the API cannot read.
func badRequest(msg string) error { return &httpError{status: http.StatusBadRequest, msg: msg} }

// statusOf maps an error to its HTTP status. Errors of the binding package
// map by sentinel: a request that is well formed but refused by the rules
// (not shipped, bad number) is 422, a clash with what is stored (an order
// status the order cannot move to from where it is among them) is 409.
// Consignee protection's refusals are 400, as its contract says: a
// merchant's protection looser than the platform's, a clip refused.
// A full pool is 503: the request is fine and the operator must add host
// numbers, after which the same request succeeds.
func statusOf(err error) int {
	var he *httpError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, binding.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, protection.ErrInvalid), errors.Is(err, protection.ErrLooser), errors.Is(err, protection.ErrBadClip):
		// A merchant's protection looser than the platform's, a value
		// that does not parse, a clip that is not a short 8 kHz WAV.
		return http.StatusBadRequest
	case errors.Is(err, binding.ErrExists), errors.Is(err, binding.ErrEnded), errors.Is(err, binding.ErrInUse),
		errors.Is(err, binding.ErrTransition):
		return http.StatusConflict
	case errors.Is(err, binding.ErrInvalid), errors.Is(err, binding.ErrNotShipped):
		return http.StatusUnprocessableEntity
	case errors.Is(err, binding.ErrPoolExhausted):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail answers err. A 500 hides its cause from the client and logs it; a
// full pool is logged too, because only the operator can fix it.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := err.Error()
	var tooBig *http.MaxBytesError
	switch {
	case status == http.StatusInternalServerError:
		s.log.Error("admin api: request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		msg = msgInternal
	case errors.Is(err, binding.ErrPoolExhausted):
		s.log.Warn("admin api: number pool exhausted; add host numbers", "path", r.URL.Path)
		msg = "pool exhausted: no host number has a free extension; add numbers to the pool"
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="vnum"`)
	case errors.As(err, &tooBig):
		msg = "request body larger than 1 MiB"
	}
	s.writeError(w, status, msg)
}

// writeError writes {"error": msg} with status.
func (s *server) writeError(w http.ResponseWriter, status int, msg string) {
	s.writeJSON(w, status, map[string]string{"error": msg})
}

// writeJSON writes v as JSON with status. Responses are never cached:
// they describe live state.
func (s *server) writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"` + msgInternal + `"}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if _, err := w.Write(buf.Bytes()); err != nil {
		// The client went away; there is no one left to tell.
		s.log.Debug("admin api: writing response", "error", err)
	}
}
