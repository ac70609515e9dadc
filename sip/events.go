package sip

import "github.com/emiago/sipgo/sip"

// leg names one side of the bridge.
type leg int

const (
	legA leg = iota
	legB
)

// eventQueue is how many events a call's mailbox holds before posting
// blocks (and offering drops): a call's events come one by one (an ACK, a
// BYE, a key), so a few suffice, and the mailbox is kept for the whole of
// the call.
const eventQueue = 16

// keysKept is how many keys a call collects at most in one state: the
// caller's extension in the IVR, the consignee's answer to a notice.
const keysKept = 64

// event is something that happened to a call, posted to its goroutine
// (callHandle.post) by SIP handlers, leg B's forks and timers.
type event interface{ isEvent() }

// ackEvent is an ACK in one of the call's dialogs.
type ackEvent struct {
	leg  leg
	cseq uint32
}

// goneEvent says a dialog of the call ended. For leg A: a BYE (bye), or
// the INVITE's transaction over (a CANCEL: cancelled); with a BYE,
// confirmed says our 2xx was out, so that the BYE counts as the caller's
// ACK even when sipgo hands it over before the ACK (each message runs on
// its own goroutine). For leg B: dialog is the fork that hung up, by BYE
// or by its dialog ending.
type goneEvent struct {
	leg       leg
	bye       bool
	confirmed bool
	cancelled bool
	dialog    calleeDialog
}

// digitEvent is a key from a SIP INFO: the caller's (leg A), or the
// consignee's sent by the carrier in leg B's dialog.
type digitEvent struct {
	digit rune
	leg   leg
}

// reofferEvent is an in-dialog re-INVITE or UPDATE; the call answers it on
// reply (see Server.reoffer).
type reofferEvent struct {
	leg   leg
	req   *sip.Request
	reply chan reofferAnswer
}

// reofferAnswer is the call's answer to a re-offer: the response, and for
// a re-INVITE a channel closed when its ACK comes.
type reofferAnswer struct {
	res   *sip.Response
	acked <-chan struct{}
}

// progressEvent is a provisional response from one of leg B's forks.
type progressEvent struct{ res *sip.Response }

// hangupEvent ends the call: shutdown, calls.max_duration, or a panic in
// one of the call's goroutines.
type hangupEvent struct{ reason endReason }

// ivrTimeoutEvent is the IVR's overall time limit; it counts only while
// the call is in the IVR.
type ivrTimeoutEvent struct{}

func (ackEvent) isEvent()        {}
func (goneEvent) isEvent()       {}
func (digitEvent) isEvent()      {}
func (reofferEvent) isEvent()    {}
func (progressEvent) isEvent()   {}
func (hangupEvent) isEvent()     {}
func (ivrTimeoutEvent) isEvent() {}
