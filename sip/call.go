package sip

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/media/record"
	"github.com/vnum/vnum/protection"
	"github.com/vnum/vnum/sip/frontdoor"
)

// CallState is where a call is in its life. The call's goroutine moves it
// forward and every decision about the call reads it.
type CallState int

// The states of a call, in the order a call passes through them.
const (
	StateNew CallState = iota
	StateIVR
	StateRinging
	// StateNotice: B answered and hears the notice of consignee
	// protection, or that the call is recorded; the caller hears that
	// the call is recorded, or ringback.
	StateNotice
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
	case StateNotice:
		return "notice"
	case StateBridged:
		return "bridged"
	case StateEnding:
		return "ending"
	}
	return "unknown"
}

// call is one call: leg A from the caller, the IVR, leg B to the trunk and
// the relay between them. It keeps the call's script (run), its event
// loop (handle, await, wait), the IVR's digits and its one end; the legs
// do what is done on each side (callerLeg, calleeLeg).
//
// One goroutine at a time owns it: the INVITE handler that took the call
// runs it to its bridge, then hands it to the goroutine that holds it to
// its end (serve, hold); the owner is the only one that reads or changes
// its fields and its legs'. Every other goroutine (SIP handlers, fork callbacks,
// timers) holds its callHandle and tells it what happened by posting an
// event.
type call struct {
	// Fixed by newCall.
	h        *callHandle
	deps     *callDeps
	id       string
	log      *slog.Logger
	invite   *sip.Request
	caller   caller
	dialled  Dialled
	callback *Callback // nil: not a consignee calling back
	// looked is a direct dial's binding, looked up before its record was
	// first written (lookUpDirect), for resolve to take.
	looked *lookup
	setUp  func() // the call is set up: it no longer counts as saturating

	state CallState
	a     callerLeg
	b     calleeLeg
	// ctx lives as long as the call; end cancels it. The goroutines the
	// call starts (prompts, ringback, forks) stop with it.
	ctx    context.Context
	cancel context.CancelFunc
	done   bool
	digits []rune // SIP INFO digits the IVR has not read yet
	// policy is the consignee protection in force for the call, once
	// asked (protect); bKeys are B's keys the call has yet to weigh.
	policy protection.Policy
	bKeys  []rune
	// recorded says the call is recorded (decideRecording), rec is its
	// recording once begun at the bridge (recording.go).
	recorded bool
	rec      *record.Writer
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

// callSetup is what a new call is made of: its INVITE as signalling took
// it, and what was found out about it before it became a call.
type callSetup struct {
	id  string
	log *slog.Logger
	// invite is leg A's INVITE and legA its dialog, which holds the INVITE
	// as dialogInvite (To with vnum's tag); contact is vnum's Contact in
	// that dialog.
	invite       *sip.Request
	legA         callerDialog
	dialogInvite *sip.Request
	contact      sip.ContactHeader
	caller       caller
	dialled      Dialled
	// offer is the caller's SDP; callback is where a consignee calling
	// back goes (nil: no callback).
	offer    *media.Desc
	callback *Callback
	// looked is a direct dial's binding as looked up at admission (nil:
	// not looked up, see lookUpDirect).
	looked *lookup
	// setUp is called once the call's record is written: the call no
	// longer counts as being set up (frontdoor.Ticket.SetUp).
	setUp func()
}

// newCall builds a call, before anyone else can see it.
func newCall(deps *callDeps, s callSetup) *call {
	c := &call{
		h:        newCallHandle(s.id, s.log, deps.panics),
		deps:     deps,
		id:       s.id,
		log:      s.log,
		invite:   s.invite,
		caller:   s.caller,
		dialled:  s.dialled,
		callback: s.callback,
		looked:   s.looked,
		setUp:    s.setUp,
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.a = callerLeg{d: s.legA, invite: s.dialogInvite, offer: s.offer, contact: s.contact,
		// Only an IVR call in answer mode is answered before B: its
		// caller must key E (answer supervision, see answer).
		waitsForB: s.dialled.Extension != "" || s.callback != nil || deps.opts.answerMode == config.AnswerEarly,
		deps:      deps, h: c.h, log: s.log, ctx: c.ctx}
	c.b = calleeLeg{deps: deps, h: c.h, log: s.log, ctx: c.ctx}
	c.cdr = newCDR(s.id, s.invite, s.caller, s.dialled, s.callback)
	c.publish()
	return c
}

// serve runs the call on the goroutine of its INVITE, which owns it
// through its setup: the timers that bound it, its record's first write
// and its script up to the bridge. An established call is then held (wait,
// then its one end) on a goroutine of its own, and the INVITE's returns:
// its stack, grown deep by the setup, is freed for the call's whole talk
// time instead of parked, and the INVITE's transaction, answered, needs no
// handler any more. release, called once the call has ended, gives back
// what the handler took for it. serve reports whether the call is held
// on (release is then the holder's to call). The caller has registered
// its handle.
func (c *call) serve(release func()) (held bool) {
	// calls.max_duration counts from the INVITE, IVR and ringing included.
	limit := time.AfterFunc(c.deps.opts.maxDuration, func() { c.h.post(hangupEvent{reasonMaxDuration}) })
	// Leg A gone (BYE, CANCEL, transaction ended) is an event for the call.
	d, h := c.a.d, c.h
	stop := context.AfterFunc(d.Context(), func() { h.post(goneEvent{leg: legA, cancelled: cancelled(d)}) })
	exit := func() {
		stop()
		limit.Stop()
		c.cancel()
		release()
	}
	defer func() {
		if !held {
			exit()
		}
	}()
	c.lookUpDirect()
	if !c.startCDR() {
		return false
	}
	c.log.Info("call started", "caller", c.cdr.Caller, "trunk", c.caller.trunk, "direct", c.dialled.Extension != "")
	// Set up: from here on the call no longer counts as saturating.
	c.setUp()
	defer c.endOnPanic() // a panic ends this call only
	r, status := c.run()
	if r != reasonNone {
		c.end(r, status)
		return false
	}
	go c.hold(exit)
	return true
}

// hold runs an established call from its bridge to its end, on a
// goroutine of its own (see serve), then calls exit.
func (c *call) hold(exit func()) {
	defer exit()
	defer c.endOnPanic()
	c.end(c.wait(), 0)
}

// startCDR writes the call's record as it starts. No record, no call: a
// store that is short turns the call away (503 with Retry-After,
// store_slow) rather than losing its bill; a broken one gets 500.
func (c *call) startCDR() bool {
	ctx, cancel := c.deps.opts.storeTimeout.ctx(c.ctx)
	err := c.deps.recorder.StartCall(ctx, &c.cdr)
	cancel()
	if err == nil {
		return true
	}
	c.log.Error("starting CDR", "error", err)
	err = frontdoor.StoreError(err)
	code := refusalFor(err).code
	c.deps.refusals.Count(err)
	if rerr := c.a.d.Respond(code, reasonPhrase(code), nil, c.deps.refusals.RetryAfter(code, false)...); rerr != nil {
		c.log.Debug("refusing call", "error", rerr)
	}
	return false
}

// run takes the call through its steps, in order: leg A's media and
// answer, the IVR (or the callback's targets), leg B, the bridge. It
// returns why the call ends and the status to record (0: the reason's),
// or reasonNone for a call established, to be held until it ends (wait).
func (c *call) run() (endReason, int) {
	if r, status := c.answer(); r != reasonNone {
		return r, status
	}
	if cb := c.callback; cb != nil {
		if r, status := c.callBack(*cb); r != reasonNone {
			return r, status
		}
		return reasonNone, 0
	}
	target, r := c.collect()
	if r != reasonNone {
		return r, 0
	}
	if r, status := c.protect(target); r != reasonNone {
		return r, status
	}
	if r, status := c.dialB(target); r != reasonNone {
		return r, status
	}
	return reasonNone, 0
}

// answer opens leg A's media. Only an IVR call in answer mode is answered
// here (200): its caller must key E. Every other call (a direct dial, a
// callback, the IVR in early mode) is answered only when B answers
// (answered), never for a party who has not: until then the caller hears
// ringing (180), B's early media or vnum's prompts (183).
func (c *call) answer() (endReason, int) {
	var signalHost netip.Addr
	if ap, err := netip.ParseAddrPort(c.invite.Source()); err == nil {
		signalHost = ap.Addr()
	}
	if r, status := c.a.open(signalHost); r != reasonNone {
		return r, status
	}
	c.setState(StateIVR)
	if c.a.waitsForB {
		return c.takeQueued(), 0
	}
	if _, r := c.answerCaller(); r != reasonNone {
		return r, 0
	}
	return reasonNone, 0
}

// answerCaller sends leg A our 2xx and waits for its ACK, and reports
// whether the caller took the call, and the reason to end it if one came.
// The ACK, or a BYE in the dialog, was posted before sipgo let the answer
// return, so the queued events say what happened: an ACK followed at once
// by a BYE can make the answer report failure although the caller took
// the call, and then the ACK decides.
func (c *call) answerCaller() (bool, endReason) {
	wasCancelled, err := c.a.sendAnswer()
	if wasCancelled {
		c.takeQueued()
		return false, reasonCancelled
	}
	r := c.takeQueued()
	if err != nil && !c.a.acked {
		c.log.Info("answer not acknowledged", "error", err)
		if r == reasonNone {
			r = reasonNoAck
		}
		return false, r
	}
	return true, r
}

// dial sends leg B's INVITE to every target at once, showing x; the first
// to answer is bridged and the others are cancelled. While they ring the
// caller hears early media or a ringback tone.
func (c *call) dial(x string, targets []legBTarget) (endReason, int) {
	if err := c.b.open(c.a.audio); err != nil {
		c.log.Error("no RTP port for leg B", "error", err)
		return reasonInternal, sip.StatusServiceUnavailable
	}
	c.setState(StateRinging)
	c.b.seized = c.deps.kpi.seize(targets)
	ringCtx, cancelRing := context.WithTimeout(c.ctx, c.deps.opts.ringTimeout)
	defer cancelRing()
	c.b.results = make(chan fork, len(targets))
	c.b.pending = len(targets)
	for i, t := range targets {
		c.b.send(ringCtx, x, t, legBCallID(c.id, i))
	}
	var failed []fork
	for c.b.pending > 0 {
		select {
		case f := <-c.b.results:
			c.b.pending--
			if f.err != nil {
				failed = append(failed, f)
				continue
			}
			c.b.seized.answer()
			c.a.stopRingback()
			cancelRing() // the other forks; any that answers anyway is hung up
			c.b.reapForks()
			return c.answered(f.b)
		case ev := <-c.h.events:
			if r := c.handle(ev); r != reasonNone {
				c.a.stopRingback()
				cancelRing()
				c.b.reapForks()
				for _, f := range failed {
					c.h.hangUpCrossed(c.ctx, f)
				}
				return r, sip.StatusRequestTerminated
			}
		}
	}
	c.b.seized.fail()
	c.a.stopRingback()
	// B's early media ends with B; the caller hears vnum's prompt.
	c.b.stream.StopRelay()
	chosen := pickFailure(failed)
	for _, f := range failed {
		if f.b != chosen.b {
			c.h.hangUpCrossed(c.ctx, f)
		}
	}
	r, status := c.b.failed(chosen, ringCtx, !c.cdr.RingingAt.IsZero())
	c.cdr.SIPStatus = status
	// The caller hears why, when it hears anything.
	prompt := media.PromptUnavailable
	switch r {
	case reasonBusy:
		prompt = media.PromptBusy
	case reasonNoAnswer:
		prompt = media.PromptNoAnswer
	}
	if ended := c.play(prompt); ended != reasonNone {
		return ended, status
	}
	return r, status
}

// progress takes a fork's provisional response: the CDR's ringing time,
// and B's early media or else ringing for the caller.
func (c *call) progress(res *sip.Response) {
	if c.cdr.RingingAt.IsZero() {
		c.cdr.RingingAt = time.Now().UTC()
		c.b.seized.progress()
	}
	if c.b.early {
		return
	}
	if remote, audio, dtmf, ok := c.b.earlyMedia(res); ok {
		// Early media replaces our ringback (RFC 3960). It flows to the
		// caller only: until B answers, what the caller sends is IVR
		// audio, not for B.
		if r := c.a.earlyMedia(); r != reasonNone {
			return // the caller is gone: its event ends the call
		}
		c.a.stopRingback()
		c.b.early = true
		c.b.stream.SetCodecs(audio, dtmf)
		c.b.stream.SetRemote(remote)
		if err := c.deps.media.relay(c.b.stream, c.a.stream); err != nil {
			c.log.Debug("early media relay", "error", err)
		}
		return
	}
	c.a.ring()
}

// answered takes the leg B that answered: media to its address in the
// payload types of its answer, relayed both ways, then B's ACK, the
// caller's answer where it waited for B, the CDR's answer time, and the
// bridge.
func (c *call) answered(d calleeDialog) (endReason, int) {
	answeredAt := time.Now().UTC()
	// The relay is up, both ways and in B's codec and telephone-event
	// payload type, before B's ACK and the caller's 200 go out: the peers
	// may send as soon as they have those, and a packet that came before
	// the relay would be taken for IVR input and lost. The relay maps each
	// leg's payload types to the other's (RFC 4733 §2.1); the streams are
	// closed by end, which stops it. With a notice B's packets are its
	// keys until the bridge, and the relay waits for it.
	audio, err := c.b.take(d)
	c.decideRecording()
	if err == nil && !c.noticed() {
		err = c.bridgeMedia()
	}
	c.b.ack()
	if err != nil {
		c.log.Error("leg B answer SDP", "error", err)
		return reasonTrunkFailed, sip.StatusNotAcceptableHere
	}
	if c.noticed() {
		if r, status := c.announce(); r != reasonNone {
			return r, status
		}
		// The notice is not talk time: the call is answered at the
		// bridge.
		answeredAt = time.Now().UTC()
		if err := c.bridgeMedia(); err != nil {
			c.log.Error("bridging after the notice", "error", err)
			return reasonInternal, sip.StatusInternalServerError
		}
	}
	r := reasonNone
	if !c.a.answered {
		// Early mode: the caller is answered only when B answers, and the
		// call is billed only once the caller has taken it.
		var took bool
		if took, r = c.answerCaller(); !took {
			if r == reasonCancelled {
				return r, sip.StatusRequestTerminated
			}
			return r, 0
		}
	}
	// Both legs are connected from here: the call is answered even if a
	// hangup is already on its way.
	c.updateCDR(func(cdr *CDR) {
		cdr.AnsweredAt = answeredAt
		cdr.SIPStatus = d.answer().StatusCode
	})
	if r == reasonNone {
		r = c.takeQueued()
	}
	if r != reasonNone {
		return r, 0
	}
	c.setState(StateBridged)
	c.log.Info("call bridged", "codec_a", c.a.audio.Name, "codec_b", audio.Name)
	return reasonNone, 0
}

// bridgeMedia relays the legs' media both ways, a recorded call's
// recording begun first.
func (c *call) bridgeMedia() error {
	c.startRecording()
	if err := c.deps.media.relay(c.a.stream, c.b.stream); err != nil {
		return err
	}
	return c.deps.media.relay(c.b.stream, c.a.stream)
}

// publish makes the call's state and record visible to /v1/calls.
func (c *call) publish() {
	c.h.shown.Store(&CallInfo{
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
	case goneEvent:
		if ev.leg == legA {
			return c.a.left(ev)
		}
		if c.b.left(ev) {
			return reasonCalleeHangup
		}
	case digitEvent:
		if ev.leg == legB {
			if c.state == StateNotice && len(c.bKeys) < keysKept {
				c.bKeys = append(c.bKeys, ev.digit)
			}
			return c.calleeKeyed(ev.digit)
		}
		if c.state == StateIVR && len(c.digits) < keysKept {
			c.digits = append(c.digits, ev.digit)
		}
	case reofferEvent:
		ev.reply <- c.reoffer(ev.leg, ev.req)
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
			c.deps.kpi.ivrOutcome(ivrTimeout)
			return reasonInvalidExtension
		}
	}
	return reasonNone
}

// ack notes an ACK: to our 2xx of leg A's INVITE, or to a re-INVITE's.
func (c *call) ack(ev ackEvent) {
	if ev.leg == legA && c.a.took(ev.cseq, c.invite.CSeq().SeqNo) {
		return
	}
	k := reAck{ev.leg, ev.cseq}
	if ch, ok := c.reAcks[k]; ok {
		close(ch)
		delete(c.reAcks, k)
	}
}

// reoffer has the leg a re-INVITE or UPDATE came on answer it; a
// re-INVITE's answer waits for its ACK (reAcks).
func (c *call) reoffer(l leg, req *sip.Request) reofferAnswer {
	bridged := c.state == StateBridged
	var ans reofferAnswer
	if l == legA {
		ans.res = c.a.reoffer(req, bridged)
	} else {
		ans.res = c.b.reoffer(req, bridged)
	}
	if req.IsInvite() && ans.res.StatusCode == sip.StatusOK {
		acked := make(chan struct{})
		if c.reAcks == nil {
			c.reAcks = make(map[reAck]chan struct{})
		}
		c.reAcks[reAck{l, req.CSeq().SeqNo}] = acked
		ans.acked = acked
	}
	return ans
}

// takeQueued handles the events already posted, without waiting, and
// returns the first reason to end among them.
func (c *call) takeQueued() endReason {
	r := reasonNone
	for {
		select {
		case ev := <-c.h.events:
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
		case ev := <-c.h.events:
			if r := c.handle(ev); r != reasonNone {
				return r
			}
		}
	}
}

// wait holds the bridged call until a leg hangs up, the media stops, the
// call runs too long or the server ends it. Meanwhile it keeps the CDR row
// current (refreshCDR), so that a crash keeps the talk time.
func (c *call) wait() endReason {
	refresh := time.NewTicker(c.deps.opts.cdrRefresh)
	defer refresh.Stop()
	c.a.watch(c.deps.opts.mediaTimeout)
	c.b.watch(c.deps.opts.mediaTimeout)
	defer c.a.unwatch()
	defer c.b.unwatch()
	var keys <-chan rune // B's keys, while the block key is watched
	if c.watchBlockKey() {
		keys = c.b.stream.Digits()
	}
	if r := c.takeQueued(); r != reasonNone {
		return r
	}
	for {
		select {
		case ev := <-c.h.events:
			if r := c.handle(ev); r != reasonNone {
				return r
			}
		case k := <-keys:
			if r := c.calleeKeyed(k); r != reasonNone {
				return r
			}
		case <-refresh.C:
			c.refreshCDR()
		case <-c.a.idle.quiet:
			return reasonMediaTimeout
		case <-c.b.idle.quiet:
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
	close(c.h.closing)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
	defer cancel()
	c.cancel()
	c.a.stopRingback()

	var wg sync.WaitGroup
	h := c.h
	refuse := false // the caller's final response, when it had no 2xx
	if r != reasonCallerHangup && r != reasonCancelled && !c.a.gone {
		if c.a.answered {
			a := &c.a
			wg.Go(func() {
				defer h.guardGo("bye")
				if err := a.hangUp(ctx); err != nil {
					h.log.Debug("bye to caller", "error", err)
				}
			})
		} else {
			refuse = true
		}
	}
	if r != reasonCalleeHangup && c.b.up() {
		b := &c.b
		wg.Go(func() {
			defer h.guardGo("bye")
			if err := b.hangUp(ctx); err != nil {
				h.log.Debug("bye to callee", "error", err)
			}
		})
	}
	wg.Wait()
	c.a.closeStream(c.log)
	c.b.closeStream(c.log)
	c.a.closePair(c.log)
	c.b.closePair(c.log)
	c.finish(r, status)
	// After the ports and the record: a recording's disk that hangs
	// holds neither.
	c.stopRecording()
	if refuse {
		// After the record: sipgo's Respond holds a final non-2xx until
		// its ACK (or Timer H, 32 s over UDP). By then the ports are free
		// and the CDR is finished, so a caller who never ACKs holds
		// neither.
		c.a.refuse(r, status)
	}
	// Forks still waiting for their answer, or for the 487 after our
	// CANCEL (up to 32 s from a carrier that never sends it), are waited
	// for last: they bill nothing and hold no port.
	c.b.reapers.Wait()
}

// endOnPanic, deferred in the call's goroutine, ends a call whose
// handling panicked through its one end path (the other leg hung up,
// ports released, the CDR finished), so the panic costs that call only.
func (c *call) endOnPanic() {
	if v := recover(); v != nil {
		c.deps.panics.recovered(v, "call", c.id)
		c.end(reasonInternal, sip.StatusInternalServerError)
	}
}

// finish completes the CDR and logs the call's one summary line.
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
	c.deps.kpi.callEnded(&cdr)
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
