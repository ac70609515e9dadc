package sip

import (
	"errors"

	"github.com/vnum/vnum/media"
)

// Errors of the signalling layer. An error that refuses an INVITE before
// the call starts maps to its SIP status through StatusFor; a call that has
// started ends for an endReason, mapped by statusForReason.
var (
	ErrNotHostNumber  = errors.New("not a host number")
	ErrBadCredentials = errors.New("bad credentials")
	ErrReplay         = errors.New("digest nonce replayed")
	ErrNoCredentials  = errors.New("no credentials")
	ErrStaleNonce     = errors.New("stale nonce")
	ErrBadRequest     = errors.New("malformed request")
	ErrTrunkFailed    = errors.New("trunk failure")
)

// StatusFor maps an error that ends an INVITE transaction to the SIP status
// and reason phrase sent to the caller (RFC 3261 §21).
func StatusFor(err error) (int, string) {
	code := 500
	switch {
	case err == nil:
		code = 200
	case errors.Is(err, ErrNotHostNumber), errors.Is(err, ErrInvalidExtension):
		code = 404
	case errors.Is(err, ErrBadCredentials), errors.Is(err, ErrReplay):
		code = 403
	case errors.Is(err, ErrBadRequest):
		code = 400
	case errors.Is(err, media.ErrBadSDP), errors.Is(err, media.ErrNoAudio), errors.Is(err, media.ErrNoCodec):
		code = 488
	case errors.Is(err, media.ErrNoPorts), errors.Is(err, ErrTrunkFailed):
		code = 503
	case errors.Is(err, ErrExpired):
		code = 410
	}
	return code, reasonPhrase(code)
}

// statusForReason is the final status an unanswered caller gets when the
// call ends for r (vnum's own terms, never a downstream status as it is).
func statusForReason(r endReason) (int, string) {
	code := 500
	switch r {
	case reasonNone, reasonCalleeHangup:
		code = 200
	case reasonBusy:
		code = 486
	case reasonNoAnswer, reasonRejected:
		code = 480
	case reasonInvalidExtension:
		code = 404
	case reasonExpired:
		code = 410
	case reasonCancelled, reasonCallerHangup:
		code = 487
	case reasonShutdown, reasonTrunkFailed:
		code = 503
	}
	return code, reasonPhrase(code)
}

// reasonPhrase is the RFC 3261 §21 reason phrase of a final status vnum sends.
func reasonPhrase(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 410:
		return "Gone"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 503:
		return "Service Unavailable"
	case 603:
		return "Decline"
	}
	if code >= 500 {
		return "Server Internal Error"
	}
	return "Request Failed"
}
