package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
)

// calleeLeg is the callee's side of a call and all it does: it opens our
// media towards B, dials (one INVITE per target; several forks when a
// callback rings all of a merchant's softphones), takes B's progress and
// answer, answers B's re-offers, hangs up, and reaps the forks whose
// answer crossed our CANCEL. Its call's goroutine alone uses it (call); a
// fork's goroutine only waits for its answer and reports it on results.
type calleeLeg struct {
	legMedia
	offer   []media.Codec // what the forks are offered, in vnum's payload types
	results chan fork     // each fork's outcome
	pending int           // forks whose outcome has not been taken
	winner  calleeDialog
	gone    bool           // the winner hung up
	early   bool           // the caller hears B's early media
	seized  seizure        // the attempt as the KPIs time it
	reapers sync.WaitGroup // goroutines hanging up forks that lost

	// Fixed by newCall: the call's dependencies, handle, log and context.
	deps *callDeps
	h    *callHandle
	log  *slog.Logger
	ctx  context.Context
}

// fork is one INVITE of leg B and how it ended.
type fork struct {
	b   calleeDialog
	err error
}

// legBTarget is where one INVITE of leg B goes: the trunk (B, or a PSTN
// caller on a callback) or a registered softphone (a callback).
type legBTarget struct {
	uri   sip.Uri // Request-URI
	to    sip.Uri // To
	dest  string  // where to send it, when not to the Request-URI (NAT)
	trunk bool    // a number on the carrier trunk
	// username and password answer the trunk's digest challenges.
	username, password string
}

// open opens leg B's media and builds the offer for a caller that settled
// on audioA.
func (b *calleeLeg) open(audioA media.Codec) error {
	pair, err := b.deps.media.openPair()
	if err != nil {
		return err
	}
	b.pair, b.sdp = pair, newSDPSession()
	offer, dtmf := legBCodecs(audioA)
	at := pair.addr()
	b.offer = offer
	b.sdp.body = media.Offer(b.deps.opts.sdpAddr(at.Addr()), int(at.Port()), b.sdp.id, offer, dtmf)
	b.stream = pair.start(streamSpec{audio: audioA, dtmf: dtmf, leg: "b"}, b.log)
	return nil
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

// callID is the Call-ID of leg B's i-th INVITE of call id: the call's id,
// so that a carrier's ticket quoting its Call-ID finds the call's log
// lines and CDR at once (the call id is a fresh UUID: it tells nothing of
// leg A); a callback ringing several phones numbers the others.
func legBCallID(id string, i int) string {
	if i == 0 {
		return id
	}
	return id + "-" + strconv.Itoa(i+1)
}

// request builds a fresh INVITE of leg B to t showing x as the caller:
// nothing of leg A is in it (README "SIP behaviour in short").
func (b *calleeLeg) request(x string, t legBTarget, callID string) *sip.Request {
	host := b.deps.opts.host
	x = sanitizeHeaderValue(x)
	req := sip.NewRequest(sip.INVITE, *t.uri.Clone())
	if t.dest != "" {
		req.SetDestination(t.dest)
	}
	if t.uri.UriParams != nil {
		if tr, ok := t.uri.UriParams.Get("transport"); ok && tr != "" {
			req.SetTransport(strings.ToUpper(tr))
		}
	}
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: x, Host: host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: t.to, Params: sip.NewParams()})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:"+x+"@"+host+">"))
	req.AppendHeader(contentTypeSDP())
	req.AppendHeader(sip.NewHeader("Allow", allowed))
	req.SetBody(b.sdp.body)
	return req
}

// dialable reports whether user is a phone number as leg B's Request-URI
// carries it: digits, optionally after a "+". Numbers are validated where
// they enter vnum; this is the last check before one goes on the wire.
func dialable(user string) bool {
	digits := strings.TrimPrefix(user, "+")
	return digits != "" && len(digits) <= 15 && strings.Trim(digits, "0123456789") == ""
}

// cancelGrace is how long a fork whose ringing ended waits for the first
// response to its INVITE before it gives up without a CANCEL.
const cancelGrace = 2 * time.Second

// send sends one INVITE of leg B, showing x, to t; its outcome comes on
// b.results.
func (b *calleeLeg) send(ringCtx context.Context, x string, t legBTarget, callID string) {
	if t.trunk && !dialable(t.uri.User) {
		b.log.Error("leg B: not a phone number, not dialled")
		b.results <- fork{err: fmt.Errorf("%w: not a phone number", ErrTrunkFailed)}
		return
	}
	req := b.request(x, t, callID)
	if callID != b.h.id {
		b.log.Info("leg B fork", "b_call_id", callID)
	}
	d, err := b.deps.legB.invite(b.ctx, req, b.h)
	if err != nil {
		// sipgo's error quotes the request, B's number with it: the
		// details go to debug only.
		b.log.Error("sending leg B INVITE failed")
		b.log.Debug("sending leg B INVITE", "error", err)
		b.results <- fork{err: fmt.Errorf("%w: %v", ErrTrunkFailed, err)}
		return
	}
	h := b.h
	heard := make(chan struct{}) // closed at the first response, 100 Trying included
	var once sync.Once
	opts := sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		once.Do(func() { close(heard) })
		// On the fork's goroutine: the call takes it as an event.
		if res.StatusCode >= sip.StatusRinging && res.StatusCode < sip.StatusOK {
			h.post(progressEvent{res})
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
	results := b.results
	go func() {
		defer stopWait(nil)
		defer stopAfter()
		results <- fork{b: d, err: h.safely("fork", func() error { return d.WaitAnswer(waitCtx, opts) })}
	}()
}

// reapForks hands the forks still pending to a goroutine that waits for
// their outcome and acknowledges and hangs up any that answered anyway
// (its 2xx crossed our CANCEL, docs/sipgo.md §3). It touches the forks'
// dialogs only; the call's end waits for it.
func (b *calleeLeg) reapForks() {
	pending, results := b.pending, b.results
	b.pending = 0
	if pending == 0 {
		return
	}
	b.reapers.Add(1)
	h, ctx := b.h, context.WithoutCancel(b.ctx)
	go func() {
		defer b.reapers.Done()
		defer h.guardGo("crossed forks")
		for ; pending > 0; pending-- {
			h.hangUpCrossed(ctx, <-results)
		}
	}()
}

// earlyMedia reads B's early media from a provisional response (RFC
// 3960): its SDP's address and the formats of the offer it chose. ok is
// false when the response carries no usable SDP.
func (b *calleeLeg) earlyMedia(res *sip.Response) (remote netip.AddrPort, audio media.Codec, dtmf *media.Codec, ok bool) {
	if len(res.Body()) == 0 {
		return netip.AddrPort{}, media.Codec{}, nil, false
	}
	d, err := media.ParseSDP(res.Body())
	if err != nil || d.Port <= 0 {
		return netip.AddrPort{}, media.Codec{}, nil, false
	}
	audio, dtmf, err = media.ParseAnswer(b.offer, d)
	if err != nil {
		return netip.AddrPort{}, media.Codec{}, nil, false
	}
	return d.RemoteAddr(), audio, dtmf, true
}

// take takes the fork that answered: it is leg B from now on, and its
// stream follows the codec, telephone-event format and address of its
// answer. The caller of take relays the streams, then acknowledges
// (ack): a packet that came before the relay would be taken for IVR
// input and lost.
func (b *calleeLeg) take(d calleeDialog) (media.Codec, error) {
	b.winner = d
	answer, err := media.ParseSDP(d.answer().Body())
	if err != nil {
		return media.Codec{}, err
	}
	audio, dtmf, err := media.ParseAnswer(b.offer, answer)
	if err != nil {
		return media.Codec{}, err
	}
	b.stream.SetCodecs(audio, dtmf)
	b.stream.SetRemote(answer.RemoteAddr())
	return audio, nil
}

// ack acknowledges the winner's answer, and has its dialog's end posted
// to the call.
func (b *calleeLeg) ack() {
	d, h := b.winner, b.h
	if err := d.Ack(context.WithoutCancel(b.ctx)); err != nil {
		b.log.Error("ACK to leg B", "error", err)
	}
	context.AfterFunc(d.Context(), func() { h.post(goneEvent{leg: legB, dialog: d}) })
}

// left notes that a fork of leg B hung up and reports whether it was the
// winner: then the call ends.
func (b *calleeLeg) left(ev goneEvent) bool {
	if ev.dialog == nil || ev.dialog != b.winner {
		return false
	}
	b.gone = true
	return true
}

// up reports whether the winner's dialog is still up (answered, not
// ended, not hung up by B): it needs our BYE.
func (b *calleeLeg) up() bool {
	d := b.winner
	return d != nil && !b.gone && d.LoadState() >= sip.DialogStateEstablished && d.LoadState() != sip.DialogStateEnded
}

// hangUp ends the winner's dialog with a BYE.
func (b *calleeLeg) hangUp(ctx context.Context) error { return b.winner.Bye(ctx) }

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

// failed maps leg B that failed as f to why the call ends and the status
// recorded; rang says something rang. A 2xx that crossed our CANCEL is
// acknowledged and hung up (docs/sipgo.md §3).
func (b *calleeLeg) failed(f fork, ringCtx context.Context, rang bool) (endReason, int) {
	b.h.hangUpCrossed(b.ctx, f)
	err := f.err
	var r endReason
	var status int
	var dr *sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &dr):
		status = dr.Res.StatusCode
		r = legBReason(status)
	case errors.Is(ringCtx.Err(), context.DeadlineExceeded) && !rang:
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
	b.deps.legBFailures.add(status)
	level := slog.LevelInfo // B's own answer: busy, no answer, a refusal
	if r == reasonTrunkFailed {
		level = slog.LevelWarn // the carrier failed: the operator's concern
	}
	b.log.Log(b.ctx, level, "leg B failed", "status", status, "reason", r.Error())
	b.log.Debug("leg B failed", "error", err)
	return r, status
}

// reoffer answers a re-INVITE or UPDATE of B (legMedia.reoffer).
func (b *calleeLeg) reoffer(req *sip.Request, bridged bool) *sip.Response {
	return b.legMedia.reoffer(req, b.deps.opts, b.deps.legB.contact(), bridged, legB, b.log)
}

// legBFailureCounts counts leg B's failures by the status they ended with
// (vnum_leg_b_failures_total{status}): a carrier's refusals told apart
// from its outages.
type legBFailureCounts struct {
	mu     sync.Mutex
	counts map[int]int64
}

func (f *legBFailureCounts) add(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts == nil {
		f.counts = make(map[int]int64)
	}
	f.counts[status]++
}

// byStatus returns the counts by final status as a string ("486", "503",
// "408" for a ring timeout).
func (f *legBFailureCounts) byStatus() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int64, len(f.counts))
	for status, n := range f.counts {
		out[strconv.Itoa(status)] = n
	}
	return out
}

// startNotice plays the notice to B in the background, before the
// bridge; played is closed when it ends, stop cuts it short (a key) and
// waits for it.
func (b *calleeLeg) startNotice(pcm []int16) (played <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan struct{})
	stream, h, log := b.stream, b.h, b.log
	go func() {
		defer close(done)
		defer h.guardGo("notice")
		if err := stream.Play(ctx, pcm); err != nil && ctx.Err() == nil {
			log.Debug("notice", "error", err)
		}
	}()
	return done, func() { cancel(); <-done }
}
