package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
)

// calleeLeg is the callee's side of a call: the INVITEs sent (forks, several
// when a callback rings all of a merchant's softphones), the one that won,
// our SDP session with it and its media. The call's goroutine alone uses
// it; a fork's goroutine only waits for its answer and reports it on
// results.
type calleeLeg struct {
	offer   []media.Codec // what the forks are offered, in vnum's payload types
	sdp     sdpSession
	sock    *media.Socket
	stream  *media.Stream
	media   mediaWatch
	results chan fork // each fork's outcome
	pending int       // forks whose outcome has not been taken
	winner  *sipgo.DialogClientSession
	gone    bool // the winner hung up
	early   bool // the caller hears B's early media
	rb      ringback
	reapers sync.WaitGroup // goroutines hanging up forks that lost
}

func (b *calleeLeg) watch(timeout time.Duration) { watchMedia(&b.media, b.stream, timeout) }
func (b *calleeLeg) unwatch()                    { unwatchMedia(&b.media) }

// stopRingback stops vnum's ringback tone, if it plays.
func (b *calleeLeg) stopRingback() { b.rb.stop() }

// fork is one INVITE of leg B and how it ended.
type fork struct {
	b   *sipgo.DialogClientSession
	err error
}

// openLegB opens leg B's media and builds the offer for a caller that
// settled on audioA.
func (c *call) openLegB() error {
	sock, err := c.s.opts.Ports.Open()
	if err != nil {
		return err
	}
	c.b.sock = sock
	offer, dtmf := legBCodecs(c.a.audio)
	sid := sessionID()
	c.b.offer = offer
	c.b.sdp = sdpSession{body: media.Offer(c.s.sdpAddr(sock), sock.Port, sid, offer, dtmf), id: sid, ver: sid}
	c.b.stream = media.NewStream(sock, netipZero, c.a.audio, dtmf, c.log)
	c.b.stream.Start()
	return nil
}

// dial sends leg B's INVITE to every target at once; the first to answer
// is bridged and the others are cancelled. While they ring the caller
// hears early media or a ringback tone.
func (c *call) dial(x string, targets []legBTarget) (endReason, int) {
	if err := c.openLegB(); err != nil {
		c.log.Error("no RTP port for leg B", "error", err)
		return reasonInternal, sip.StatusServiceUnavailable
	}
	c.setState(StateRinging)
	ringCtx, cancelRing := context.WithTimeout(c.ctx, c.s.opts.RingTimeout)
	defer cancelRing()
	c.b.results = make(chan fork, len(targets))
	c.b.pending = len(targets)
	for i, t := range targets {
		c.sendFork(ringCtx, x, t, c.legBCallID(i))
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
			c.b.stopRingback()
			cancelRing() // the other forks; any that answers anyway is hung up
			c.reapForks()
			return c.answered(f.b)
		case ev := <-c.events:
			if r := c.handle(ev); r != reasonNone {
				c.b.stopRingback()
				cancelRing()
				c.reapForks()
				for _, f := range failed {
					c.hangUpCrossed(f)
				}
				return r, sip.StatusRequestTerminated
			}
		}
	}
	c.b.stopRingback()
	// B's early media ends with B; the caller hears vnum's prompt.
	c.b.stream.StopRelay()
	chosen := pickFailure(failed)
	for _, f := range failed {
		if f.b != chosen.b {
			c.hangUpCrossed(f)
		}
	}
	return c.legBFailed(chosen, ringCtx)
}

// legBCallID is the Call-ID of leg B's i-th INVITE: vnum's call id, so
// that a carrier's ticket quoting its Call-ID finds the call's log lines
// and CDR at once (the call id is a fresh UUID: it tells nothing of leg
// A); a callback ringing several phones numbers the others.
func (c *call) legBCallID(i int) string {
	if i == 0 {
		return c.id
	}
	return c.id + "-" + strconv.Itoa(i+1)
}

// cancelGrace is how long a fork whose ringing ended waits for the first
// response to its INVITE before it gives up without a CANCEL.
const cancelGrace = 2 * time.Second

// sendFork sends one INVITE of leg B; its outcome comes on c.b.results.
func (c *call) sendFork(ringCtx context.Context, x string, t legBTarget, callID string) {
	if t.trunk && !dialable(t.uri.User) {
		c.log.Error("leg B: not a phone number, not dialled")
		c.b.results <- fork{err: fmt.Errorf("%w: not a phone number", ErrTrunkFailed)}
		return
	}
	req := c.legBRequest(x, t, callID)
	if callID != c.id {
		c.log.Info("leg B fork", "b_call_id", callID)
	}
	b, err := c.s.dialog.WriteInvite(c.ctx, req)
	if err != nil {
		// sipgo's error quotes the request, B's number with it: the
		// details go to debug only.
		c.log.Error("sending leg B INVITE failed")
		c.log.Debug("sending leg B INVITE", "error", err)
		c.b.results <- fork{err: fmt.Errorf("%w: %v", ErrTrunkFailed, err)}
		return
	}
	c.s.live.addFork(c, b)
	heard := make(chan struct{}) // closed at the first response, 100 Trying included
	var once sync.Once
	opts := sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		once.Do(func() { close(heard) })
		// On the fork's goroutine: the call takes it as an event.
		if res.StatusCode >= sip.StatusRinging && res.StatusCode < sip.StatusOK {
			c.post(progressEvent{res})
		}
		return nil
	}}
	opts.Username, opts.Password = t.username, t.password
	// A CANCEL may only follow a provisional response (RFC 3261 §9.1), so
	// sipgo waits out Timer B (32 s) for an INVITE nobody answered at all.
	// When the ringing ends before anything was heard, the fork waits
	// cancelGrace for a response already on its way (then it is
	// cancelled as usual), and gives up after that: there is nothing to
	// cancel.
	waitCtx, stopWait := context.WithCancelCause(context.WithoutCancel(ringCtx))
	stopAfter := context.AfterFunc(ringCtx, func() {
		select {
		case <-heard:
			stopWait(context.Cause(ringCtx))
		case <-time.After(cancelGrace):
			select {
			case <-heard:
				stopWait(context.Cause(ringCtx))
			default:
				stopWait(sipgo.WaitAnswerForceCancelErr)
			}
		}
	})
	results := c.b.results
	go func() {
		defer stopWait(nil)
		defer stopAfter()
		results <- fork{b: b, err: c.safely("fork", func() error { return b.WaitAnswer(waitCtx, opts) })}
	}()
}

// reapForks hands the forks still pending to a goroutine that waits for
// their outcome and acknowledges and hangs up any that answered anyway
// (its 2xx crossed our CANCEL, docs/sipgo.md §3). It touches the forks'
// dialogs only; end waits for it.
func (c *call) reapForks() {
	pending, results := c.b.pending, c.b.results
	c.b.pending = 0
	if pending == 0 {
		return
	}
	c.b.reapers.Add(1)
	go func() {
		defer c.b.reapers.Done()
		defer c.guardGo("crossed forks")
		for ; pending > 0; pending-- {
			c.hangUpCrossed(<-results)
		}
	}()
}

// progress takes a fork's provisional response: the CDR's ringing time,
// and B's early media or else vnum's ringback for the caller.
func (c *call) progress(res *sip.Response) {
	if c.cdr.RingingAt.IsZero() {
		c.cdr.RingingAt = time.Now().UTC()
	}
	if c.b.early {
		return
	}
	if len(res.Body()) > 0 {
		if d, err := media.ParseSDP(res.Body()); err == nil && d.Port > 0 {
			if audio, dtmf, err := media.ParseAnswer(c.b.offer, d); err == nil {
				// Early media replaces our ringback (RFC 3960). It
				// flows to the caller only: until B answers, what the
				// caller sends is IVR audio, not for B.
				if r := c.earlyMedia(); r != reasonNone {
					return // the caller is gone: its event ends the call
				}
				c.b.stopRingback()
				c.b.early = true
				c.b.stream.SetCodecs(audio, dtmf)
				c.b.stream.SetRemote(d.RemoteAddr())
				if err := media.Relay(c.b.stream, c.a.stream); err != nil {
					c.log.Debug("early media relay", "error", err)
				}
				return
			}
		}
	}
	c.ringing()
}

// answered takes the leg B that answered: ACK, media to its address in
// the payload types of its answer, the CDR's answer time, and the bridge.
func (c *call) answered(b *sipgo.DialogClientSession) (endReason, int) {
	answeredAt := time.Now().UTC()
	c.b.winner = b
	// The relay is up, both ways and in B's codec and telephone-event
	// payload type, before B's ACK and the caller's 200 go out: the peers
	// may send as soon as they have those, and a packet that came before
	// the relay would be taken for IVR input and lost.
	d, err := media.ParseSDP(b.InviteResponse.Body())
	var audio media.Codec
	var dtmf *media.Codec
	if err == nil {
		audio, dtmf, err = media.ParseAnswer(c.b.offer, d)
	}
	if err == nil {
		err = c.connect(audio, dtmf, d)
	}
	if aerr := b.Ack(context.WithoutCancel(c.ctx)); aerr != nil {
		c.log.Error("ACK to leg B", "error", aerr)
	}
	context.AfterFunc(b.Context(), func() { c.post(goneEvent{leg: legB, dialog: b}) })
	if err != nil {
		c.log.Error("leg B answer SDP", "error", err)
		return reasonTrunkFailed, sip.StatusNotAcceptableHere
	}
	r := reasonNone
	if !c.a.answered {
		// Early mode: the caller is answered only when B answers, and the
		// call is billed only once the caller has taken it.
		var took bool
		if took, r = c.answerA(); !took {
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
		cdr.SIPStatus = b.InviteResponse.StatusCode
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

// connect sets leg B's stream to the codec, telephone-event format and
// address of B's answer and relays both ways at once (see answered); the
// relay maps each leg's payload types to the other's (RFC 4733 §2.1). The
// streams are closed by end, which stops the relay.
func (c *call) connect(audio media.Codec, dtmf *media.Codec, d *media.Desc) error {
	c.b.stream.SetCodecs(audio, dtmf)
	c.b.stream.SetRemote(d.RemoteAddr())
	if err := media.Relay(c.a.stream, c.b.stream); err != nil {
		return err
	}
	return media.Relay(c.b.stream, c.a.stream)
}

// hangUpCrossed acknowledges and hangs up a leg B whose 2xx crossed our
// CANCEL: WaitAnswer neither ACKs nor BYEs it (docs/sipgo.md §3).
func (c *call) hangUpCrossed(f fork) {
	if f.b == nil {
		return
	}
	res := f.b.InviteResponse
	if f.err == nil || (res != nil && res.IsSuccess()) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
		defer cancel()
		if err := f.b.Ack(ctx); err == nil {
			if err := f.b.Bye(ctx); err != nil {
				c.log.Debug("bye after crossed cancel", "error", err)
			}
		}
	}
}

// pickFailure chooses which failed fork speaks for leg B: a busy phone
// before any other refusal, otherwise the first.
func pickFailure(failed []fork) fork {
	for _, f := range failed {
		var dr *sipgo.ErrDialogResponse
		if errors.As(f.err, &dr) && legBReason(dr.Res.StatusCode) == reasonBusy {
			return f
		}
	}
	return failed[0]
}

// legBFailed maps a failed leg B to the reason the call ends, telling the
// caller with a prompt when leg A is answered. A 2xx that crossed our
// CANCEL is acknowledged and hung up (docs/sipgo.md §3).
func (c *call) legBFailed(f fork, ringCtx context.Context) (endReason, int) {
	c.hangUpCrossed(f)
	err := f.err
	var r endReason
	var status int
	var dr *sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &dr):
		status = dr.Res.StatusCode
		r = legBReason(status)
	case errors.Is(ringCtx.Err(), context.DeadlineExceeded) && c.cdr.RingingAt.IsZero():
		// Nothing rang within calls.ring_timeout: the trunk (or the
		// phone rung back) did not take the call, B was never alerted.
		r, status = reasonTrunkFailed, sip.StatusRequestTimeout
	case errors.Is(ringCtx.Err(), context.DeadlineExceeded):
		r, status = reasonNoAnswer, sip.StatusRequestTimeout
	case errors.Is(err, ErrTrunkFailed):
		r, status = reasonTrunkFailed, sip.StatusServiceUnavailable
	default:
		r, status = reasonTrunkFailed, sip.StatusRequestTimeout
	}
	c.s.legBFailed.add(status)
	level := slog.LevelInfo // B's own answer: busy, no answer, a refusal
	if r == reasonTrunkFailed {
		level = slog.LevelWarn // the carrier failed: the operator's concern
	}
	c.log.Log(c.ctx, level, "leg B failed", "status", status, "reason", r.Error())
	c.log.Debug("leg B failed", "error", err)
	c.cdr.SIPStatus = status
	prompt := "unavailable"
	switch r {
	case reasonBusy:
		prompt = "busy"
	case reasonNoAnswer:
		prompt = "no_answer"
	}
	if ended := c.play(prompt); ended != reasonNone {
		return ended, status
	}
	return r, status
}

// legBCodecs is what leg B is offered for a caller that settled on audioA:
// both G.711 laws, the caller's first, so that a carrier taking only the
// other law still connects (the relay converts between them), and
// telephone-event.
func legBCodecs(audioA media.Codec) ([]media.Codec, *media.Codec) {
	// vnum's own payload type numbers: the relay maps them to the caller's.
	all, dtmf := media.DefaultCodecs()
	slices.SortStableFunc(all, func(a, b media.Codec) int {
		switch {
		case strings.EqualFold(a.Name, audioA.Name) == strings.EqualFold(b.Name, audioA.Name):
			return 0
		case strings.EqualFold(a.Name, audioA.Name):
			return -1
		}
		return 1
	})
	return all, dtmf
}

// ringback plays a ringback tone to the caller while B rings.
type ringback struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *ringback) start(c *call) {
	if r.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	stream := c.a.stream
	go func() {
		defer close(r.done)
		defer c.guardGo("ringback")
		tone := media.RingbackCycle() // shared, computed once
		for ctx.Err() == nil {
			if err := stream.Play(ctx, tone); err != nil {
				return
			}
		}
	}()
}

func (r *ringback) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
}
