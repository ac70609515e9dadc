package sip

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// callerLeg is the caller's side of a call: the server dialog of its INVITE,
// our SDP session with the caller and its media. Only d is read outside
// the call's goroutine (handlers pass ACK, BYE and re-offers to sipgo's
// dialog, which has its own locks); it is set before the call is
// registered and never changes.
type callerLeg struct {
	d     *sipgo.DialogServerSession
	offer *media.Desc
	// waitsForB says the caller is answered only when B answers: a
	// direct dial, a callback, or the IVR in early mode.
	waitsForB bool
	early     bool // our 183 with SDP went out: the caller hears our media
	ringing   bool // our 180 went out
	answered  bool // our 2xx went out
	acked     bool // the caller acknowledged it (ACK, or a BYE in the dialog)
	gone      bool // the caller's dialog ended (BYE, CANCEL)
	sdp       sdpSession
	sock      *media.Socket
	stream    *media.Stream
	audio     media.Codec
	media     mediaWatch
}

// mediaWatch is a leg's media timeout: quiet fires when the leg sent no
// RTP for media.timeout; nil while the leg is on hold (it may send none).
type mediaWatch struct {
	silent bool
	quiet  <-chan struct{}
	stop   func()
}

// watchMedia (re)starts the media timeout of a leg that is not on hold.
func watchMedia(w *mediaWatch, st *media.Stream, timeout time.Duration) {
	unwatchMedia(w)
	if timeout > 0 && st != nil && !w.silent {
		w.quiet, w.stop = st.Quiet(timeout)
	}
}

func unwatchMedia(w *mediaWatch) {
	if w.stop != nil {
		w.stop()
	}
	w.quiet, w.stop = nil, nil
}

func (a *callerLeg) watch(timeout time.Duration) { watchMedia(&a.media, a.stream, timeout) }
func (a *callerLeg) unwatch()                    { unwatchMedia(&a.media) }

// cancelled reports whether the caller cancelled its INVITE.
func (a *callerLeg) cancelled() bool {
	return errors.Is(context.Cause(a.d.Context()), sip.ErrTransactionCanceled)
}

// answer opens leg A's media and starts listening for digits at once, so
// that a caller may key E before or over the prompt. Only an IVR call in
// answer mode is answered here (200): its caller must key E. Every other
// call (a direct dial, a callback, the IVR in early mode) is answered only
// when B answers (answered), never for a party who has not: until then the
// caller hears ringing (180), B's early media or vnum's prompts (183).
func (c *call) answer() (endReason, int) {
	sock, err := c.s.opts.Ports.Open()
	if err != nil {
		c.log.Error("no RTP port", "error", err)
		// Admission saw a free pair, another call took it meanwhile.
		c.s.door.Count(frontdoor.ErrNoPorts)
		return reasonInternal, sip.StatusServiceUnavailable
	}
	c.a.sock = sock
	sid := sessionID()
	sdp, audio, dtmf, err := media.Answer(c.a.offer, c.s.sdpAddr(sock), sock.Port, sid)
	if err != nil {
		c.log.Info("no common codec", "error", err)
		return reasonInternal, sip.StatusNotAcceptableHere
	}
	c.a.sdp, c.a.audio = sdpSession{body: sdp, id: sid, ver: sid}, audio
	c.a.stream = media.NewStream(sock, c.a.offer.RemoteAddr(), audio, dtmf, c.log)
	if ip, err := netip.ParseAddr(sourceHost(c.invite)); err == nil {
		// A phone behind NAT sends RTP from its SIP's host: the stream
		// prefers it to a stranger while it learns the caller's source.
		c.a.stream.SetSignalHost(ip)
	}
	c.a.stream.Start()
	c.setState(StateIVR)
	if c.a.waitsForB {
		return c.takeQueued(), 0
	}
	if _, r := c.answerA(); r != reasonNone {
		return r, 0
	}
	return reasonNone, 0
}

// earlyMedia opens an early session with a caller not yet answered: 183
// Session Progress with our SDP (RFC 3960), so that the caller hears what
// vnum plays (prompts, ringback) or relays (B's early media) before the
// call is answered. It is sent once; the 200 that may follow carries the
// same SDP.
func (c *call) earlyMedia() endReason {
	if c.a.answered || c.a.early {
		return reasonNone
	}
	if err := c.a.d.Respond(sip.StatusSessionInProgress, "Session Progress", c.a.sdp.body, contentTypeSDP()); err != nil {
		if c.a.cancelled() {
			return reasonCancelled
		}
		c.log.Info("183 to caller failed", "error", err)
		return reasonInternal
	}
	c.a.early = true
	return reasonNone
}

// ringing tells a caller not yet answered that B rings: 180 once, and the
// caller's phone makes its own ringback. A caller already in an early
// session (183) hears vnum's ringback tone instead.
func (c *call) ringing() {
	switch {
	case c.a.answered || c.a.early:
		c.b.rb.start(c)
	case !c.a.ringing:
		if err := c.a.d.Respond(sip.StatusRinging, "Ringing", nil); err != nil {
			c.log.Debug("180 to caller", "error", err)
			return
		}
		c.a.ringing = true
	}
}

// contentTypeSDP is the Content-Type of a message carrying SDP.
func contentTypeSDP() sip.Header { return sip.NewHeader("Content-Type", "application/sdp") }

// answerA sends leg A our 2xx and waits for its ACK, and reports whether
// the caller took the call, and the reason to end it if one came. The ACK,
// or a BYE in the dialog, was posted before sipgo let RespondSDP return,
// so the queued events say what happened: an ACK followed at once by a BYE
// can make RespondSDP report failure although the caller took the call,
// and then the ACK decides.
func (c *call) answerA() (bool, endReason) {
	err := c.a.d.RespondSDP(c.a.sdp.body)
	if err != nil && (c.a.cancelled() || errors.Is(err, sip.ErrTransactionCanceled) || c.a.d.LoadState() == 0) {
		// A CANCEL crossed our 2xx and won: sipgo sent no 2xx (the dialog
		// never got established) and answered the INVITE 487 itself.
		c.takeQueued()
		return false, reasonCancelled
	}
	// Our 2xx went out: from here the session is ended with a BYE (RFC
	// 3261 §13.3.1.4), not a final response.
	c.a.answered = true
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

// sdpSession is our side of one leg's SDP session: the current body and
// the o= id and version (RFC 3264 §8).
type sdpSession struct {
	body    []byte
	id, ver uint64
}

// answerReoffer answers an in-dialog re-INVITE or UPDATE (hold, resume,
// session refresh, RFC 3311 / RFC 4028) so the call stays up: it follows a
// changed remote address, answers the offered direction (sendonly →
// recvonly) and bumps the o= version only when the answer changes. A leg
// on hold may send no RTP, so media.timeout does not count it until it
// resumes.
func (c *call) answerReoffer(l leg, req *sip.Request) reofferAnswer {
	stream, sess, watch := c.a.stream, &c.a.sdp, &c.a.media
	contact := &c.s.dialogFor(c.invite).ContactHDR
	if l == legB {
		stream, sess, watch = c.b.stream, &c.b.sdp, &c.b.media
		contact = &c.s.dialog.ContactHDR
	}
	if len(req.Body()) > 0 && stream != nil {
		d, err := media.ParseSDP(req.Body())
		if err != nil {
			return reofferAnswer{res: sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)}
		}
		d.Prefer(stream.Audio()) // the relay converts to the codec in use
		held := d.Port == 0 || !d.Addr.IsValid() || d.Addr.IsUnspecified()
		if !held {
			stream.SetRemote(d.RemoteAddr())
		}
		body, err := reanswer(d, c.s.sdpAddr(stream.Socket()), stream.Socket().Port, sess)
		if err != nil {
			return reofferAnswer{res: sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)}
		}
		sess.body = body
		// Any hold (sendonly, recvonly, inactive) may stop a phone's RTP.
		silent := held || d.Direction != media.SendRecv
		if silent != watch.silent {
			watch.silent = silent
			if c.state == StateBridged {
				// The timeout stops on hold and counts again from the resume.
				watchMedia(watch, stream, c.s.opts.MediaTimeout)
			}
		}
		c.log.Info("re-offer", "leg", int(l), "direction", d.Direction)
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if req.IsInvite() || len(req.Body()) > 0 {
		res.SetBody(sess.body)
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.AppendHeader(contact)
	ans := reofferAnswer{res: res}
	if req.IsInvite() {
		acked := make(chan struct{})
		if c.reAcks == nil {
			c.reAcks = make(map[reAck]chan struct{})
		}
		c.reAcks[reAck{l, req.CSeq().SeqNo}] = acked
		ans.acked = acked
	}
	return ans
}

// reanswer is our answer to offer d in session sess, its version bumped
// only when the answer changes (RFC 3264 §8).
func reanswer(d *media.Desc, ip netip.Addr, port int, sess *sdpSession) ([]byte, error) {
	answer, _, _, err := media.AnswerVersion(d, ip, port, sess.id, sess.ver)
	if err != nil || bytes.Equal(answer, sess.body) {
		return answer, err
	}
	sess.ver++
	answer, _, _, err = media.AnswerVersion(d, ip, port, sess.id, sess.ver)
	return answer, err
}
