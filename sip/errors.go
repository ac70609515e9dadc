package sip

import (
	"errors"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// Errors of the signalling layer. The status each one gets is in one of
// the three tables below, one per direction: refusals (an INVITE turned
// away before a call exists), legBFailures (leg B's final status to why
// the call ends) and endings (why a call ended to what the caller hears
// and what the CDR says).
var (
	ErrNotHostNumber  = errors.New("not a host number")
	ErrBadCredentials = errors.New("bad credentials")
	ErrReplay         = errors.New("digest nonce replayed")
	ErrNoCredentials  = errors.New("no credentials")
	ErrStaleNonce     = errors.New("stale nonce")
	ErrBadRequest     = errors.New("malformed request")
	ErrTrunkFailed    = errors.New("trunk failure")
	// ErrBlocked refuses a source blocked after too many failed logins.
	ErrBlocked = errors.New("source blocked")
	// ErrWalking refuses a caller that keyed too many invalid extensions
	// within the hour (security.invalid_extensions).
	ErrWalking = errors.New("too many invalid extensions")
	// ErrDraining refuses new calls while the server shuts down (the
	// front door's).
	ErrDraining = frontdoor.ErrDraining
	// ErrStoreSlow refuses a call whose store could not answer in
	// store.timeout (the front door's; a Router returns it for a store
	// that cannot answer now).
	ErrStoreSlow = frontdoor.ErrStoreSlow
)

// refusal is the status an INVITE refused before its call gets; the
// front door counts the overload refusals and gives their Retry-After.
type refusal struct {
	err  error
	code int
}

// refusals maps what refuses a new INVITE to its status (RFC 3261 §21).
// An error matching none is 500. A missing or stale credential, or a
// replayed nonce-count, is not refused: it gets a fresh challenge (401 or
// 407, see authorize), so that phones reusing a nonce are not locked out.
var refusals = []refusal{
	{ErrBadRequest, sip.StatusBadRequest},
	{ErrBadCredentials, sip.StatusForbidden},
	{ErrBlocked, sip.StatusForbidden},
	{ErrWalking, sip.StatusForbidden},
	{ErrNotHostNumber, sip.StatusNotFound},
	{media.ErrBadSDP, sip.StatusNotAcceptableHere},
	{media.ErrNoAudio, sip.StatusNotAcceptableHere},
	{media.ErrNoCodec, sip.StatusNotAcceptableHere},
	{frontdoor.ErrNoPorts, sip.StatusServiceUnavailable},
	{frontdoor.ErrDraining, sip.StatusServiceUnavailable},
	{frontdoor.ErrStoreSlow, sip.StatusServiceUnavailable},
	{frontdoor.ErrMaxActive, sip.StatusServiceUnavailable},
	{frontdoor.ErrInviteRate, sip.StatusServiceUnavailable},
	{frontdoor.ErrSaturated, sip.StatusServiceUnavailable},
}

// refusalFor is the refusals row of err: 500 and no overload reason when
// none matches.
func refusalFor(err error) refusal {
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			return r
		}
	}
	return refusal{err: err, code: sip.StatusInternalServerError}
}

// legBFailures maps leg B's final status to why the call ends; any other
// 5xx or 6xx is a trunk failure and any other 4xx a rejection (legBReason).
// The caller then hears vnum's status for that reason (endings), never
// B's status as it is (RFC 3261 §16.7).
var legBFailures = map[int]endReason{
	sip.StatusBusyHere:                   reasonBusy,
	sip.StatusGlobalBusyEverywhere:       reasonBusy,
	sip.StatusRequestTimeout:             reasonNoAnswer,
	sip.StatusTemporarilyUnavailable:     reasonNoAnswer,
	sip.StatusForbidden:                  reasonRejected,
	sip.StatusNotFound:                   reasonRejected,
	sip.StatusGone:                       reasonRejected,
	sip.StatusAddressIncomplete:          reasonRejected,
	sip.StatusGlobalDecline:              reasonRejected,
	sip.StatusGlobalDoesNotExistAnywhere: reasonRejected,
}

// legBReason is why the call ends when leg B answered code (legBFailures).
func legBReason(code int) endReason {
	if r, ok := legBFailures[code]; ok {
		return r
	}
	if code >= 500 {
		return reasonTrunkFailed
	}
	return reasonRejected
}

// endReason is why a call ended. Its Error names it for the log's one
// summary line of the call.
type endReason int

const (
	reasonNone endReason = iota
	reasonCallerHangup
	reasonCalleeHangup
	reasonCancelled
	reasonNoAck
	reasonInvalidExtension
	reasonExpired
	reasonBusy
	reasonNoAnswer
	reasonRejected
	reasonTrunkFailed
	reasonMediaTimeout
	reasonMaxDuration
	reasonShutdown
	reasonStoreSlow
	reasonInternal
)

// ending is what one end reason means to the caller and to the CDR.
type ending struct {
	text string
	// code is the final status of a caller not yet answered.
	code int
	// disposition is the CDR's for a call never answered ("answered"
	// otherwise, whatever ended it).
	disposition callrec.Disposition
	hangupBy    callrec.HangupBy
}

// endings is the one table of end reasons.
var endings = map[endReason]ending{
	reasonNone:             {"none", sip.StatusOK, callrec.DispositionFailed, callrec.HangupSystem},
	reasonCallerHangup:     {"caller hung up", sip.StatusRequestTerminated, callrec.DispositionCancelled, callrec.HangupCaller},
	reasonCalleeHangup:     {"callee hung up", sip.StatusOK, callrec.DispositionFailed, callrec.HangupCallee},
	reasonCancelled:        {"caller cancelled", sip.StatusRequestTerminated, callrec.DispositionCancelled, callrec.HangupCaller},
	reasonNoAck:            {"no ACK from caller", sip.StatusInternalServerError, callrec.DispositionFailed, callrec.HangupSystem},
	reasonInvalidExtension: {"invalid extension", sip.StatusNotFound, callrec.DispositionInvalidExtension, callrec.HangupSystem},
	reasonExpired:          {"binding expired", sip.StatusGone, callrec.DispositionExpired, callrec.HangupSystem},
	reasonBusy:             {"callee busy", sip.StatusBusyHere, callrec.DispositionBusy, callrec.HangupCallee},
	reasonNoAnswer:         {"no answer", sip.StatusTemporarilyUnavailable, callrec.DispositionNoAnswer, callrec.HangupSystem},
	reasonRejected:         {"callee rejected", sip.StatusTemporarilyUnavailable, callrec.DispositionRejected, callrec.HangupCallee},
	reasonTrunkFailed:      {"trunk failure", sip.StatusServiceUnavailable, callrec.DispositionFailed, callrec.HangupSystem},
	reasonMediaTimeout:     {"media timeout", sip.StatusInternalServerError, callrec.DispositionFailed, callrec.HangupSystem},
	reasonMaxDuration:      {"maximum duration", sip.StatusInternalServerError, callrec.DispositionFailed, callrec.HangupSystem},
	reasonShutdown:         {"server shutdown", sip.StatusServiceUnavailable, callrec.DispositionFailed, callrec.HangupSystem},
	reasonStoreSlow:        {"store too slow", sip.StatusServiceUnavailable, callrec.DispositionFailed, callrec.HangupSystem},
	reasonInternal:         {"internal error", sip.StatusInternalServerError, callrec.DispositionFailed, callrec.HangupSystem},
}

func (r endReason) ending() ending {
	if e, ok := endings[r]; ok {
		return e
	}
	return endings[reasonInternal]
}

func (r endReason) Error() string { return r.ending().text }

// disposition is the CDR disposition of a call that ended for r.
func (r endReason) disposition(answered bool) callrec.Disposition {
	if answered {
		return callrec.DispositionAnswered
	}
	return r.ending().disposition
}

// hangupBy is the CDR hangup_by of a call that ended for r.
func (r endReason) hangupBy() callrec.HangupBy { return r.ending().hangupBy }

// statusForReason is the final status an unanswered caller gets when the
// call ends for r (vnum's own terms, never a downstream status as it is).
func statusForReason(r endReason) (int, string) {
	code := r.ending().code
	return code, reasonPhrase(code)
}

// statusUnsupportedURIScheme is 416 (RFC 3261 §21.4.14); sipgo names
// the code after HTTP's meaning.
const statusUnsupportedURIScheme = 416

// reasonPhrase is the RFC 3261 §21 reason phrase of a status vnum sends.
func reasonPhrase(code int) string {
	switch code {
	case sip.StatusTrying:
		return "Trying"
	case sip.StatusRinging:
		return "Ringing"
	case sip.StatusSessionInProgress:
		return "Session Progress"
	case sip.StatusOK:
		return "OK"
	case sip.StatusBadRequest:
		return "Bad Request"
	case sip.StatusUnauthorized:
		return "Unauthorized"
	case sip.StatusForbidden:
		return "Forbidden"
	case sip.StatusNotFound:
		return "Not Found"
	case sip.StatusMethodNotAllowed:
		return "Method Not Allowed"
	case sip.StatusProxyAuthRequired:
		return "Proxy Authentication Required"
	case sip.StatusRequestTimeout:
		return "Request Timeout"
	case sip.StatusGone:
		return "Gone"
	case sip.StatusRequestEntityTooLarge:
		return "Request Entity Too Large"
	case statusUnsupportedURIScheme:
		return "Unsupported URI Scheme"
	case sip.StatusBadExtension:
		return "Bad Extension"
	case sip.StatusIntervalToBrief:
		return "Interval Too Brief"
	case sip.StatusTemporarilyUnavailable:
		return "Temporarily Unavailable"
	case sip.StatusCallTransactionDoesNotExists:
		return "Call/Transaction Does Not Exist"
	case sip.StatusBusyHere:
		return "Busy Here"
	case sip.StatusRequestTerminated:
		return "Request Terminated"
	case sip.StatusNotAcceptableHere:
		return "Not Acceptable Here"
	case sip.StatusServiceUnavailable:
		return "Service Unavailable"
	case sip.StatusVersionNotSupported:
		return "Version Not Supported"
	case sip.StatusMessageTooLarge:
		return "Message Too Large"
	case sip.StatusGlobalDecline:
		return "Decline"
	}
	if code >= 500 {
		return "Server Internal Error"
	}
	return "Request Failed"
}
