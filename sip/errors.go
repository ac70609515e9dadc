package sip

import (
	"errors"

	"github.com/vnum/vnum/media"
)

// Errors of the signalling layer. Each error that ends an INVITE transaction
// maps to a SIP status through StatusFor.
var (
	ErrNotHostNumber  = errors.New("not a host number")
	ErrDraining       = errors.New("server draining")
	ErrBlocked        = errors.New("source blocked after repeated authentication failures")
	ErrBadCredentials = errors.New("bad credentials")
	ErrReplay         = errors.New("digest nonce replayed")
	ErrNoCredentials  = errors.New("no credentials")
	ErrStaleNonce     = errors.New("stale nonce")
	ErrBadRequest     = errors.New("malformed request")
	ErrTrunkBusy      = errors.New("callee busy")
	ErrTrunkNoAnswer  = errors.New("callee did not answer")
	ErrTrunkRejected  = errors.New("callee rejected the call")
	ErrTrunkFailed    = errors.New("trunk failure")
	ErrNoTrunk        = errors.New("no outbound trunk configured")
)

// StatusFor maps an error that ends an INVITE transaction to the SIP status
// and reason phrase sent to the caller (RFC 3261 §21).
func StatusFor(err error) (int, string) {
	switch {
	case err == nil:
		return 200, "OK"
	case errors.Is(err, ErrNotHostNumber):
		return 404, "Not Found"
	case errors.Is(err, ErrDraining):
		return 503, "Service Unavailable"
	case errors.Is(err, ErrBlocked), errors.Is(err, ErrBadCredentials), errors.Is(err, ErrReplay):
		return 403, "Forbidden"
	case errors.Is(err, ErrBadRequest):
		return 400, "Bad Request"
	case errors.Is(err, media.ErrBadSDP), errors.Is(err, media.ErrNoAudio), errors.Is(err, media.ErrNoCodec):
		return 488, "Not Acceptable Here"
	case errors.Is(err, media.ErrNoPorts):
		return 503, "Service Unavailable"
	case errors.Is(err, ErrTrunkBusy):
		return 486, "Busy Here"
	case errors.Is(err, ErrTrunkNoAnswer):
		return 480, "Temporarily Unavailable"
	case errors.Is(err, ErrTrunkRejected):
		return 480, "Temporarily Unavailable"
	case errors.Is(err, ErrInvalidExtension):
		return 404, "Not Found"
	case errors.Is(err, ErrExpired):
		return 410, "Gone"
	case errors.Is(err, ErrTrunkFailed), errors.Is(err, ErrNoTrunk):
		return 503, "Service Unavailable"
	default:
		return 500, "Server Internal Error"
	}
}

// reasonPhrase is the RFC 3261 §21 reason phrase of a final status vnum sends.
func reasonPhrase(code int) string {
	switch code {
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
