package sip

import (
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// q850 is an ISDN User Part cause (ITU-T Q.850) and its text, as a Reason
// header carries it (RFC 3326): what a carrier's switch reads from a final
// status to tell a busy consignee from an unreachable one.
type q850 struct {
	cause int
	text  string
}

// The causes vnum sends.
var (
	causeUnallocated     = q850{1, "Unallocated (unassigned) number"}
	causeUserBusy        = q850{17, "User busy"}
	causeNoUserResponse  = q850{18, "No user responding"}
	causeNoAnswer        = q850{19, "No answer from user (user alerted)"}
	causeRejected        = q850{21, "Call rejected"}
	causeNumberChanged   = q850{22, "Number changed"}
	causeExchangeRouting = q850{25, "Exchange routing error"}
	causeInvalidFormat   = q850{28, "Invalid number format (address incomplete)"}
	causeOutOfOrder      = q850{38, "Network out of order"}
	causeTemporary       = q850{41, "Temporary failure"}
	causeNotImplemented  = q850{79, "Service or option not implemented, unspecified"}
	causeIncompatible    = q850{88, "Incompatible destination"}
	causeTimerExpiry     = q850{102, "Recovery on timer expiry"}
	causeInterworking    = q850{127, "Interworking, unspecified"}
)

// causeOfStatus maps leg B's final status to its cause, after RFC 3398
// §8.2.6.1 (SIP to ISUP); 488 and 606 say the codecs did not meet.
var causeOfStatus = map[int]q850{
	sip.StatusBadRequest:                   causeTemporary,
	sip.StatusUnauthorized:                 causeRejected,
	sip.StatusPaymentRequired:              causeRejected,
	sip.StatusForbidden:                    causeRejected,
	sip.StatusNotFound:                     causeUnallocated,
	sip.StatusMethodNotAllowed:             q850{63, "Service or option not available, unspecified"},
	sip.StatusNotAcceptable:                causeNotImplemented,
	sip.StatusProxyAuthRequired:            causeRejected,
	sip.StatusRequestTimeout:               causeTimerExpiry,
	sip.StatusGone:                         causeNumberChanged,
	sip.StatusUnsupportedMediaType:         causeNotImplemented,
	sip.StatusTemporarilyUnavailable:       causeNoUserResponse,
	sip.StatusCallTransactionDoesNotExists: causeTemporary,
	sip.StatusLoopDetected:                 causeExchangeRouting,
	sip.StatusTooManyHops:                  causeExchangeRouting,
	sip.StatusAddressIncomplete:            causeInvalidFormat,
	sip.StatusAmbiguous:                    causeUnallocated,
	sip.StatusBusyHere:                     causeUserBusy,
	sip.StatusNotAcceptableHere:            causeIncompatible,
	sip.StatusInternalServerError:          causeTemporary,
	sip.StatusNotImplemented:               causeNotImplemented,
	sip.StatusBadGateway:                   causeOutOfOrder,
	sip.StatusServiceUnavailable:           causeTemporary,
	sip.StatusGatewayTimeout:               causeTimerExpiry,
	sip.StatusGlobalBusyEverywhere:         causeUserBusy,
	sip.StatusGlobalDecline:                causeRejected,
	sip.StatusGlobalDoesNotExistAnywhere:   causeUnallocated,
	sip.StatusGlobalNotAcceptable:          causeIncompatible,
}

// causeFor is the cause a caller not yet answered is told when its call
// ends for r, status being leg B's final status (or the one vnum recorded
// for it); ok is false for endings that are not about reaching B (a
// cancel, a shutdown, a store that fails), which carry no Reason.
func causeFor(r endReason, status int) (q850, bool) {
	switch r {
	case reasonInvalidExtension:
		return causeUnallocated, true
	case reasonExpired:
		return causeNumberChanged, true
	case reasonNoAnswer:
		if status == sip.StatusRequestTimeout {
			// vnum's own ring timer (calls.ring_timeout): B was alerted.
			return causeNoAnswer, true
		}
	case reasonBusy, reasonRejected, reasonTrunkFailed:
	default:
		return q850{}, false
	}
	if c, ok := causeOfStatus[status]; ok {
		return c, true
	}
	switch r {
	case reasonBusy:
		return causeUserBusy, true
	case reasonNoAnswer:
		return causeNoUserResponse, true
	case reasonRejected:
		return causeRejected, true
	}
	if status >= 400 && status < 700 {
		return causeInterworking, true
	}
	return causeOutOfOrder, true
}

// reasonHeader is the Reason header (RFC 3326) of a cause.
func (c q850) header() sip.Header {
	return sip.NewHeader("Reason", "Q.850;cause="+strconv.Itoa(c.cause)+`;text="`+c.text+`"`)
}
