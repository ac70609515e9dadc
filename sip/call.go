package sip

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
)

// CallState is where a call is in its life. The call's goroutine moves it
// forward and every decision about the call reads it.
type CallState int

// The states of a call, in the order a call passes through them.
const (
	StateNew CallState = iota
	StateIVR
	StateRinging
	StateBridged
	StateEnding
)

// String names the state for logs and /v1/calls.
func (s CallState) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateIVR:
		return "ivr"
	case StateRinging:
		return "ringing"
	case StateBridged:
		return "bridged"
	case StateEnding:
		return "ending"
	}
	return "unknown"
}

// leg names one side of the bridge.
type leg int

const (
	legA leg = iota
	legB
)

// eventQueue is how many events a call holds before posting blocks.
const eventQueue = 64

// call is one call: leg A from the caller, the IVR, leg B to the trunk and
// the relay between them.
//
// One goroutine owns it: the INVITE handler that took the call runs it to
// its end (runCall) and is the only one that reads or changes the fields
// below "owner only". Every other goroutine (SIP handlers, fork callbacks,
// timers) tells it what happened by posting an event (post), and reads only
// the fields fixed before the call was registered, or shown.
type call struct {
	// Fixed before the call is registered: read anywhere.
	s       *Server
	id      string
	log     *slog.Logger
	invite  *sip.Request
	account Account
	trunk   bool
	dialled Dialled
	events  chan event
	closing chan struct{} // closed when the call starts ending: events are dropped
	// shown is what /v1/calls shows, published by the owner.
	shown atomic.Pointer[CallInfo]

	// Owner only.
	state CallState
	a     callerLeg
	b     calleeLeg
	// ctx lives as long as the call; its goroutine cancels it in end. The
	// helpers it starts (prompts, ringback, forks) stop with it.
	ctx    context.Context
	cancel context.CancelFunc
	done   bool
	digits []rune // SIP INFO digits the IVR has not read yet
	// reAcks are the re-INVITE answers waiting for their ACK, by leg and CSeq.
	reAcks     map[reAck]chan struct{}
	cdr        CDR
	legs       Legs          // the dialogs of the legs answered, as the store keeps them
	refreshing chan struct{} // closed when the CDR refresh in flight is written
}

// reAck names a re-INVITE answered on one leg.
type reAck struct {
	leg  leg
	cseq uint32
}

// event is something that happened to a call, posted to its goroutine.
type event interface{ isEvent() }

// ackEvent is an ACK in one of the call's dialogs.
type ackEvent struct {
	leg  leg
	cseq uint32
}

// byeEvent is a BYE in a dialog of the call. For leg A, confirmed says our
// 2xx was out: a BYE in the dialog then counts as the caller's ACK, even
// when sipgo hands it over before the ACK (each message runs on its own
// goroutine). For leg B, dialog is the fork hung up.
type byeEvent struct {
	leg       leg
	confirmed bool
	dialog    *sipgo.DialogClientSession
}

// goneEvent says a leg's dialog ended (BYE, CANCEL, transaction over).
type goneEvent struct {
	leg       leg
	cancelled bool // leg A's INVITE was cancelled
	dialog    *sipgo.DialogClientSession
}

// digitEvent is a key from a SIP INFO.
type digitEvent struct{ digit rune }

// reofferEvent is an in-dialog re-INVITE or UPDATE; the call answers it on
// reply (see onReoffer).
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

// hangupEvent ends the call: shutdown, an admin, calls.max_duration, or a
// panic in one of the call's helpers.
type hangupEvent struct{ reason endReason }

// ivrTimeoutEvent is the IVR's overall time limit; it counts only while
// the call is in the IVR.
type ivrTimeoutEvent struct{}

func (ackEvent) isEvent()        {}
func (byeEvent) isEvent()        {}
func (goneEvent) isEvent()       {}
func (digitEvent) isEvent()      {}
func (reofferEvent) isEvent()    {}
func (progressEvent) isEvent()   {}
func (hangupEvent) isEvent()     {}
func (ivrTimeoutEvent) isEvent() {}

// post hands ev to the call's goroutine. It waits while the queue is full
// and drops ev once the call is ending.
func (c *call) post(ev event) {
	select {
	case c.events <- ev:
	case <-c.closing:
	}
}

// offer hands ev to the call's goroutine if its queue has room, and drops
// it otherwise: for what a peer may send without limit (INFO digits), so
// that a flood holds no handler while the call is busy.
func (c *call) offer(ev event) {
	select {
	case c.events <- ev:
	default:
	}
}

// hangup ends the call from outside (shutdown, admin).
func (c *call) hangup(r endReason) { c.post(hangupEvent{r}) }

func (c *call) info() CallInfo {
	if p := c.shown.Load(); p != nil {
		return *p
	}
	return CallInfo{ID: c.id, State: StateNew.String()}
}

// publish makes the call's state and record visible to /v1/calls.
func (c *call) publish() {
	c.shown.Store(&CallInfo{
		ID:        c.id,
		Merchant:  c.cdr.Merchant,
		Binding:   c.cdr.BindingID,
		Host:      c.cdr.Host,
		Extension: c.cdr.Extension,
		State:     c.state.String(),
		StartedAt: c.cdr.StartedAt,
	})
}

// setState moves the call forward; a call never goes back to an earlier
// state (a step that would is a bug, logged and ignored).
func (c *call) setState(st CallState) {
	if st < c.state {
		c.log.Error("call state would go back", "from", c.state.String(), "to", st.String())
		return
	}
	c.state = st
	c.publish()
}

// handle applies an event to the call and returns why the call must end,
// or reasonNone. Events that only one step waits for (a fork's answer,
// the IVR's digits) are taken by that step; here they are kept or dropped.
func (c *call) handle(ev event) endReason {
	switch ev := ev.(type) {
	case ackEvent:
		c.ack(ev)
	case byeEvent:
		if ev.leg == legA {
			c.a.gone = true
			if ev.confirmed {
				c.a.acked = true
			}
			return reasonCallerHangup
		}
		if ev.dialog != nil && ev.dialog == c.b.winner {
			c.b.gone = true
			return reasonCalleeHangup
		}
	case goneEvent:
		if ev.leg == legA {
			c.a.gone = true
			if ev.cancelled || !c.a.answered {
				return reasonCancelled
			}
			return reasonCallerHangup
		}
		if ev.dialog != nil && ev.dialog == c.b.winner {
			c.b.gone = true
			return reasonCalleeHangup
		}
	case digitEvent:
		if c.state == StateIVR && len(c.digits) < eventQueue {
			c.digits = append(c.digits, ev.digit)
		}
	case reofferEvent:
		ev.reply <- c.answerReoffer(ev.leg, ev.req)
	case progressEvent:
		// A fork cancelled after another won may still ring: no ringback
		// then.
		if c.state == StateRinging && c.b.winner == nil {
			c.progress(ev.res)
		}
	case hangupEvent:
		return ev.reason
	case ivrTimeoutEvent:
		if c.state == StateIVR {
			return reasonInvalidExtension
		}
	}
	return reasonNone
}

// ack notes an ACK: to our 2xx of leg A's INVITE, or to a re-INVITE's.
func (c *call) ack(ev ackEvent) {
	if ev.leg == legA && ev.cseq == c.invite.CSeq().SeqNo {
		c.a.acked = true
		return
	}
	k := reAck{ev.leg, ev.cseq}
	if ch, ok := c.reAcks[k]; ok {
		close(ch)
		delete(c.reAcks, k)
	}
}

// takeQueued handles the events already posted, without waiting, and
// returns the first reason to end among them.
func (c *call) takeQueued() endReason {
	r := reasonNone
	for {
		select {
		case ev := <-c.events:
			if got := c.handle(ev); r == reasonNone {
				r = got
			}
		default:
			return r
		}
	}
}

// await handles events until done is closed, and returns reasonNone then,
// or the reason the call must end first.
func (c *call) await(done <-chan struct{}) endReason {
	for {
		select {
		case <-done:
			return reasonNone
		case ev := <-c.events:
			if r := c.handle(ev); r != reasonNone {
				return r
			}
		}
	}
}

// play plays a whole prompt to the caller (no barge-in), handling the
// call's events meanwhile; it returns early, with the reason, when the
// call must end.
func (c *call) play(name string) endReason {
	if c.a.stream == nil {
		return reasonNone
	}
	// A caller not yet answered hears it as early media.
	if r := c.earlyMedia(); r != reasonNone {
		return r
	}
	pcm, err := media.Prompt(c.s.opts.Language, name)
	if err != nil {
		c.log.Error("prompt", "name", name, "error", err)
		return reasonNone
	}
	ctx, stop := context.WithCancel(c.ctx)
	defer stop()
	played := make(chan struct{})
	go func() {
		defer close(played)
		defer c.guardGo("prompt")
		if err := c.a.stream.Play(ctx, pcm); err != nil && ctx.Err() == nil {
			c.log.Debug("play", "name", name, "error", err)
		}
	}()
	r := c.await(played)
	stop()
	<-played
	return r
}

// wait holds the bridged call until a leg hangs up, the media stops, the
// call runs too long or the server ends it. Meanwhile it keeps the CDR row
// current (refreshCDR), so that a crash keeps the talk time.
func (c *call) wait() endReason {
	refresh := time.NewTicker(c.s.opts.CDRRefresh)
	defer refresh.Stop()
	c.a.watch(c.s.opts.MediaTimeout)
	c.b.watch(c.s.opts.MediaTimeout)
	defer c.a.unwatch()
	defer c.b.unwatch()
	if r := c.takeQueued(); r != reasonNone {
		return r
	}
	for {
		select {
		case ev := <-c.events:
			if r := c.handle(ev); r != reasonNone {
				return r
			}
		case <-refresh.C:
			c.refreshCDR()
		case <-c.a.media.quiet:
			return reasonMediaTimeout
		case <-c.b.media.quiet:
			return reasonMediaTimeout
		}
	}
}

// end finishes the call exactly once: BYE (or a final response) to the legs
// still up, media closed, the CDR completed. It runs on a context that
// survives the call's cancellation.
func (c *call) end(r endReason, status int) {
	if c.done {
		return
	}
	c.done = true
	c.setState(StateEnding)
	close(c.closing)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
	defer cancel()
	c.cancel()
	c.b.stopRingback()

	var wg sync.WaitGroup
	var refuse func() // the caller's final response, when it had no 2xx
	if r != reasonCallerHangup && r != reasonCancelled && !c.a.gone {
		if c.a.answered {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.guardGo("bye")
				if err := c.a.d.Bye(ctx); err != nil {
					c.log.Debug("bye to caller", "error", err)
				}
			}()
		} else {
			refuse = func() { c.refuseCaller(r, status) }
		}
	}
	if b := c.b.winner; b != nil && r != reasonCalleeHangup && !c.b.gone &&
		b.LoadState() >= sip.DialogStateEstablished && b.LoadState() != sip.DialogStateEnded {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.guardGo("bye")
			if err := b.Bye(ctx); err != nil {
				c.log.Debug("bye to callee", "error", err)
			}
		}()
	}
	wg.Wait()
	c.closeMedia()
	c.finish(r, status)
	if refuse != nil {
		// After the record: sipgo's Respond holds a final non-2xx until
		// its ACK (or Timer H, 32 s over UDP). By then the ports are free
		// and the CDR is finished, so a caller who never ACKs holds
		// neither.
		refuse()
	}
	// Forks still waiting for their answer, or for the 487 after our
	// CANCEL (up to 32 s from a carrier that never sends it), are waited
	// for last: they bill nothing and hold no port.
	c.b.reapers.Wait()
}

// refuseCaller sends the final response of a caller that never had our
// 2xx. The caller hears why in vnum's terms (RFC 3261 §16.7: a downstream
// 401/407, 3xx or 5xx is not passed on as it is); only a refusal of the
// caller's own offer keeps its status.
func (c *call) refuseCaller(r endReason, status int) {
	code, phrase := statusForReason(r)
	if r == reasonInternal && status >= 300 {
		code, phrase = status, reasonPhrase(status)
	}
	hdrs := c.s.door.RetryAfter(code, r == reasonTrunkFailed)
	if cause, ok := causeFor(r, status); ok {
		// RFC 3326: why B could not be reached, as the PSTN says it.
		hdrs = append(hdrs, cause.header())
	}
	if err := c.a.d.Respond(code, phrase, nil, hdrs...); err != nil {
		c.log.Debug("final response to caller", "error", err)
	}
}

// closeMedia closes both legs' streams and sockets.
func (c *call) closeMedia() {
	for _, st := range []*media.Stream{c.a.stream, c.b.stream} {
		if st != nil {
			if err := st.Close(); err != nil {
				c.log.Debug("closing stream", "error", err)
			}
		}
	}
	for _, so := range []*media.Socket{c.a.sock, c.b.sock} {
		if so != nil {
			if err := so.Close(); err != nil {
				c.log.Debug("closing socket", "error", err)
			}
		}
	}
}

// finish completes the CDR and logs the call's one summary line (STYLE).
func (c *call) finish(r endReason, status int) {
	c.cdr.EndedAt = time.Now().UTC()
	answered := !c.cdr.AnsweredAt.IsZero()
	c.cdr.Disposition = r.disposition(answered)
	c.cdr.HangupBy = r.hangupBy()
	if status != 0 {
		c.cdr.SIPStatus = status
	} else if c.cdr.SIPStatus == 0 {
		c.cdr.SIPStatus, _ = statusForReason(r)
	}
	cdr := c.cdr
	c.finishCDR(&cdr)
	attrs := []any{"reason", r.Error(), "disposition", cdr.Disposition, "direction", cdr.Direction,
		"hangup_by", cdr.HangupBy, "sip_status", cdr.SIPStatus, "binding", cdr.BindingID,
		"duration_ms", cdr.EndedAt.Sub(cdr.StartedAt).Milliseconds()}
	if !cdr.RingingAt.IsZero() {
		attrs = append(attrs, "to_ringing_ms", cdr.RingingAt.Sub(cdr.StartedAt).Milliseconds())
	}
	if answered {
		attrs = append(attrs, "to_answer_ms", cdr.AnsweredAt.Sub(cdr.StartedAt).Milliseconds(),
			"talk_ms", cdr.EndedAt.Sub(cdr.AnsweredAt).Milliseconds())
	}
	c.log.Info("call ended", attrs...)
}
