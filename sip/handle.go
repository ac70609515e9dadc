package sip

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// callHandle is a call as every goroutine but its own sees it: who it is,
// the mailbox its events go to, what /v1/calls shows of it, and the work
// that runs off the call's goroutine (the re-INVITE answer's
// retransmitter, the hang-up of forks whose answer crossed our CANCEL,
// the guard of the goroutines a call starts). Its fields are fixed when
// the call is made, or safe for any goroutine (the channels, shown); it
// holds nothing of the call's state, so that nothing here can change it
// (the call itself is in call.go; TestOnlyTheCallChangesItsState).
type callHandle struct {
	id  string
	log *slog.Logger
	// events is the call's mailbox (post).
	events chan event
	// closing is closed when the call starts ending: events are dropped.
	closing chan struct{}
	// shown is what /v1/calls shows, published by the call.
	shown atomic.Pointer[CallInfo]
	// panics counts what guardGo and safely recover.
	panics *panicCounter
}

func newCallHandle(id string, log *slog.Logger, panics *panicCounter) *callHandle {
	return &callHandle{id: id, log: log, events: make(chan event, eventQueue), closing: make(chan struct{}), panics: panics}
}

// post hands ev to the call's goroutine. It waits while the queue is full
// and drops ev once the call is ending.
func (h *callHandle) post(ev event) {
	select {
	case h.events <- ev:
	case <-h.closing:
	}
}

// offer hands ev to the call's goroutine if its queue has room, and drops
// it otherwise: for what a peer may send without limit (INFO digits), so
// that a flood holds no handler while the call is busy.
func (h *callHandle) offer(ev event) {
	select {
	case h.events <- ev:
	default:
	}
}

// hangup ends the call from outside: the server's shutdown.
func (h *callHandle) hangup(r endReason) { h.post(hangupEvent{r}) }

// info is what /v1/calls shows of the call.
func (h *callHandle) info() CallInfo {
	if p := h.shown.Load(); p != nil {
		return *p
	}
	return CallInfo{ID: h.id, State: StateNew.String()}
}

// retransmitUntilAck resends a re-INVITE's 2xx from T1 doubling to T2
// until its ACK arrives, for at most 64×T1 (RFC 3261 §13.3.1.4): over UDP
// a lost 200 would otherwise fail a session refresh. It runs on the
// request's handler, which sipgo needs alive to keep the transaction.
func (h *callHandle) retransmitUntilAck(acked <-chan struct{}, resend func() error) {
	interval := sip.T1
	timer := time.NewTimer(interval)
	defer timer.Stop()
	giveUp := time.NewTimer(64 * sip.T1)
	defer giveUp.Stop()
	for {
		select {
		case <-acked:
			return
		case <-timer.C:
			if err := resend(); err != nil {
				return
			}
			interval = min(2*interval, sip.T2)
			timer.Reset(interval)
		case <-giveUp.C:
			h.log.Info("re-INVITE answer not acknowledged")
			return
		case <-h.closing:
			return
		}
	}
}

// hangUpCrossed acknowledges and hangs up a fork of leg B whose 2xx
// crossed our CANCEL: sipgo's WaitAnswer neither ACKs nor BYEs it
// (docs/sipgo.md §3). It touches the fork's dialog only, so it may run on
// any goroutine.
func (h *callHandle) hangUpCrossed(ctx context.Context, f fork) {
	if f.b == nil {
		return
	}
	res := f.b.answer()
	if f.err == nil || (res != nil && res.IsSuccess()) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := f.b.Ack(ctx); err == nil {
			if err := f.b.Bye(ctx); err != nil {
				h.log.Debug("bye after crossed cancel", "error", err)
			}
		}
	}
}

// guardGo, deferred first in a goroutine a call starts, recovers a panic
// in it and ends the call (its goroutine sees the event and takes the end
// path): a goroutine's panic would otherwise end the process.
func (h *callHandle) guardGo(what string) {
	if v := recover(); v != nil {
		h.panics.recovered(v, "call", h.id, "goroutine", what)
		h.post(hangupEvent{reasonInternal})
	}
}

// safely runs f for a goroutine whose result someone waits for: a panic
// in f is recovered, logged and counted, and becomes f's error, so the
// waiter is not left waiting.
func (h *callHandle) safely(what string, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			h.panics.recovered(v, "call", h.id, "goroutine", what)
			err = fmt.Errorf("%w: panic in %s", ErrTrunkFailed, what)
		}
	}()
	return f()
}
