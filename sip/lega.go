package sip

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// callerLeg is the caller's side of a call and all it does: it opens our
// media with the caller, answers (200) or keeps the caller in an early
// session (183) or ringing (180, or vnum's ringback tone), plays prompts,
// refuses with a final status, answers the caller's re-offers and hangs
// up. Its call's goroutine alone uses it (call).
type callerLeg struct {
	legMedia
	// d is the server dialog of the caller's INVITE, invite the INVITE as
	// the dialog holds it (To with vnum's tag); offer is its SDP.
	d      callerDialog
	invite *sip.Request
	offer  *media.Desc
	// contact is vnum's Contact in the caller's dialog.
	contact sip.ContactHeader
	// waitsForB says the caller is answered only when B answers: a
	// direct dial, a callback, or the IVR in early mode.
	waitsForB bool
	early     bool // our 183 with SDP went out: the caller hears our media
	ringing   bool // our 180 went out
	answered  bool // our 2xx went out
	acked     bool // the caller acknowledged it (ACK, or a BYE in the dialog)
	gone      bool // the caller's dialog ended (BYE, CANCEL)
	audio     media.Codec
	// ringback plays vnum's ringback tone while B rings (a caller in an
	// early session): its cancel and end.
	rbCancel context.CancelFunc
	rbDone   chan struct{}

	// Fixed by newCall: the call's dependencies, handle, log and context.
	deps *callDeps
	h    *callHandle
	log  *slog.Logger
	ctx  context.Context
}

// cancelled reports whether the caller cancelled the INVITE of d.
func cancelled(d callerDialog) bool {
	return errors.Is(context.Cause(d.Context()), sip.ErrTransactionCanceled)
}

// open opens the caller's media: an RTP port pair, our SDP answer to the
// caller's offer, and the stream, which listens for digits at once, so
// that a caller may key E before or over the prompt. signalHost is the
// host the caller's INVITE came from: a phone behind NAT sends RTP from
// there, and the stream prefers it to a stranger while it learns the
// caller's source.
func (a *callerLeg) open(signalHost netip.Addr) (endReason, int) {
	pair, err := a.deps.media.openPair()
	if err != nil {
		a.log.Error("no RTP port", "error", err)
		// Admission saw a free pair, another call took it meanwhile.
		a.deps.refusals.Count(frontdoor.ErrNoPorts)
		return reasonInternal, sip.StatusServiceUnavailable
	}
	a.pair, a.sdp = pair, newSDPSession()
	at := pair.addr()
	body, audio, dtmf, err := media.Answer(a.offer, a.deps.opts.sdpAddr(at.Addr()), int(at.Port()), a.sdp.id)
	if err != nil {
		a.log.Info("no common codec", "error", err)
		return reasonInternal, sip.StatusNotAcceptableHere
	}
	a.sdp.body, a.audio = body, audio
	a.stream = pair.start(streamSpec{remote: a.offer.RemoteAddr(), audio: audio, dtmf: dtmf, signalHost: signalHost, leg: "a"}, a.log)
	return reasonNone, 0
}

// earlyMedia opens an early session with a caller not yet answered: 183
// Session Progress with our SDP (RFC 3960), so that the caller hears what
// vnum plays (prompts, ringback) or relays (B's early media) before the
// call is answered. It is sent once; the 200 that may follow carries the
// same SDP. A 183 that cannot be sent ends the call: as cancelled when
// the caller cancelled, else as vnum's failure.
func (a *callerLeg) earlyMedia() endReason {
	if a.answered || a.early {
		return reasonNone
	}
	if err := a.d.Respond(sip.StatusSessionInProgress, "Session Progress", a.sdp.body, contentTypeSDP()); err != nil {
		if cancelled(a.d) {
			return reasonCancelled
		}
		a.log.Info("183 to caller failed", "error", err)
		return reasonInternal
	}
	a.early = true
	return reasonNone
}

// ring tells a caller not yet answered that B rings: 180 once, and the
// caller's phone makes its own ringback. A caller already in an early
// session (183) or answered hears vnum's ringback tone instead.
func (a *callerLeg) ring() {
	switch {
	case a.answered || a.early:
		a.startRingback()
	case !a.ringing:
		if err := a.d.Respond(sip.StatusRinging, "Ringing", nil); err != nil {
			a.log.Debug("180 to caller", "error", err)
			return
		}
		a.ringing = true
	}
}

// startRingback plays a ringback tone to the caller while B rings, until
// stopRingback.
func (a *callerLeg) startRingback() {
	if a.rbCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	a.rbCancel, a.rbDone = cancel, done
	stream, h := a.stream, a.h
	go func() {
		defer close(done)
		defer h.guardGo("ringback")
		tone := media.RingbackCycle() // shared, computed once
		for ctx.Err() == nil {
			if err := stream.Play(ctx, tone); err != nil {
				return
			}
		}
	}()
}

// stopRingback stops vnum's ringback tone, if it plays.
func (a *callerLeg) stopRingback() {
	if a.rbCancel == nil {
		return
	}
	a.rbCancel()
	<-a.rbDone
	a.rbCancel = nil
}

// startPrompt plays a prompt to the caller in the background; played is
// closed when it ends, stop cuts it short (barge-in) and waits for it.
func (a *callerLeg) startPrompt(name string) (played <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	pcm, err := media.Prompt(a.deps.opts.language, name)
	if err != nil {
		a.log.Error("prompt", "name", name, "error", err)
		close(done)
		return done, cancel
	}
	stream, h, log := a.stream, a.h, a.log
	go func() {
		defer close(done)
		defer h.guardGo("prompt")
		if err := stream.Play(ctx, pcm); err != nil && ctx.Err() == nil {
			log.Debug("play", "name", name, "error", err)
		}
	}()
	return done, func() { cancel(); <-done }
}

// sendAnswer sends the caller our 2xx with our SDP (sipgo retransmits it
// until the ACK). cancelled says a CANCEL crossed it and won: sipgo sent
// no 2xx (the dialog never got established) and answered the INVITE 487
// itself. Otherwise the 2xx went out, err or not: from here the session
// is ended with a BYE (RFC 3261 §13.3.1.4), not a final response; err
// says the caller did not acknowledge it in time.
func (a *callerLeg) sendAnswer() (wasCancelled bool, err error) {
	err = a.d.RespondSDP(a.sdp.body)
	if err != nil && (cancelled(a.d) || errors.Is(err, sip.ErrTransactionCanceled) || a.d.LoadState() == 0) {
		return true, err
	}
	a.answered = true
	return false, err
}

// refuse sends the final response of a caller that never had our 2xx.
// The caller hears why in vnum's terms (RFC 3261 §16.7: a downstream
// 401/407, 3xx or 5xx is not passed on as it is); only a refusal of the
// caller's own offer keeps its status. status is leg B's final status
// (or the one vnum recorded for it).
func (a *callerLeg) refuse(r endReason, status int) {
	code, phrase := statusForReason(r)
	if r == reasonInternal && status >= 300 {
		code, phrase = status, reasonPhrase(status)
	}
	hdrs := a.deps.refusals.RetryAfter(code, r == reasonTrunkFailed)
	if cause, ok := causeFor(r, status); ok {
		// RFC 3326: why B could not be reached, as the PSTN says it.
		hdrs = append(hdrs, cause.header())
	}
	if err := a.d.Respond(code, phrase, nil, hdrs...); err != nil {
		a.log.Debug("final response to caller", "error", err)
	}
}

// took notes an ACK in the caller's dialog: true when it acknowledges our
// 2xx of the INVITE (cseq, the INVITE's CSeq), not a re-INVITE's.
func (a *callerLeg) took(cseq, inviteCSeq uint32) bool {
	if cseq != inviteCSeq {
		return false
	}
	a.acked = true
	return true
}

// left notes the caller's dialog ending and returns why the call ends: a
// BYE is the caller hanging up (and counts as its ACK when our 2xx was
// out); the INVITE's transaction ending before our 2xx is a cancel.
func (a *callerLeg) left(ev goneEvent) endReason {
	a.gone = true
	if ev.bye {
		if ev.confirmed {
			a.acked = true
		}
		return reasonCallerHangup
	}
	if ev.cancelled || !a.answered {
		return reasonCancelled
	}
	return reasonCallerHangup
}

// reoffer answers a re-INVITE or UPDATE of the caller (legMedia.reoffer).
func (a *callerLeg) reoffer(req *sip.Request, bridged bool) *sip.Response {
	return a.legMedia.reoffer(req, a.deps.opts, a.contact, bridged, legA, a.log)
}

// hangUp ends the caller's answered dialog with a BYE.
func (a *callerLeg) hangUp(ctx context.Context) error { return a.d.Bye(ctx) }
