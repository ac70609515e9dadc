package sip

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
)

// CallState is where a call is in its life.
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

// call is one call: leg A from the caller, the IVR, leg B to the trunk and
// the relay between them. The INVITE handler owns it for its whole life.
type call struct {
	s   *Server
	id  string
	log *slog.Logger

	invite  *sip.Request
	account Account
	trunk   bool
	dialled Dialled

	a      *sipgo.DialogServerSession
	b      *sipgo.DialogClientSession
	bMu    sync.Mutex
	offerA *media.Desc
	sdpMu  sync.Mutex // guards sdpA and sdpB after the call is set up
	sdpA   sdpSession // our answer to A
	sdpB   sdpSession // our offer to B (or answer to B's re-offer)

	silentA, silentB atomic.Bool // the leg holds and sends no RTP

	sockA, sockB     *media.Socket
	streamA, streamB *media.Stream
	audioA           media.Codec
	dtmfA            *media.Codec

	infoDigits chan rune   // digits from SIP INFO
	reAcks     chan uint32 // CSeqs of ACKs to re-INVITE answers

	ctx    context.Context
	cancel context.CancelCauseFunc

	state     atomic.Int32
	answeredA atomic.Bool // leg A got our 2xx
	ackedA    atomic.Bool // leg A acknowledged it (ACK, or a BYE in the dialog)
	done      atomic.Bool
	forkWG    sync.WaitGroup // reapers of cancelled leg B forks
	forkIDs   []string       // Call-IDs of leg B's INVITEs; guarded by s.mu

	cdrMu sync.Mutex
	cdr   CDR
	// refreshing is set while a refresh of the CDR row is being written.
	refreshing atomic.Bool
}

func (c *call) setState(st CallState) { c.state.Store(int32(st)) }

func (c *call) currentState() CallState { return CallState(c.state.Load()) }

func (c *call) info() CallInfo {
	c.cdrMu.Lock()
	defer c.cdrMu.Unlock()
	return CallInfo{
		ID:        c.id,
		Merchant:  c.cdr.Merchant,
		Binding:   c.cdr.BindingID,
		Host:      c.cdr.Host,
		Extension: c.cdr.Extension,
		State:     c.currentState().String(),
		StartedAt: c.cdr.StartedAt,
	}
}

// hangup ends the call from outside its handler (shutdown, admin).
func (c *call) hangup(r endReason) {
	c.cancel(r)
}

// reason is why the call's context ended, reasonNone while it goes on.
func (c *call) reason() endReason {
	var r endReason
	if errors.As(context.Cause(c.ctx), &r) {
		return r
	}
	if c.ctx.Err() != nil {
		return reasonInternal
	}
	return reasonNone
}

func (c *call) infoDigit(d rune) {
	select {
	case c.infoDigits <- d:
	default:
	}
}

// byeFromA ends the call for the caller's BYE. A BYE in the dialog means
// the caller had our 2xx, even when sipgo hands it over before the ACK
// (each message runs on its own goroutine), so it also counts as the ACK.
func (c *call) byeFromA(req *sip.Request, tx sip.ServerTransaction) {
	if st := c.a.LoadState(); st >= sip.DialogStateEstablished && st != sip.DialogStateEnded {
		c.ackedA.Store(true) // our 2xx was on its way
	}
	c.cancel(reasonCallerHangup) // the cause is set before ReadBye ends the dialog
	if err := c.a.ReadBye(req, tx); err != nil {
		c.log.Debug("bye from caller", "error", err)
		c.s.respond(req, tx, 200, "OK")
	}
}

func (c *call) byeFromB(req *sip.Request, tx sip.ServerTransaction) {
	c.bMu.Lock()
	b := c.b
	c.bMu.Unlock()
	if b == nil || req.CallID().Value() != b.InviteRequest.CallID().Value() {
		// A fork that lost (callback) hanging up its crossed answer.
		c.s.respond(req, tx, 200, "OK")
		return
	}
	if err := b.ReadBye(req, tx); err != nil {
		c.log.Debug("bye from callee", "error", err)
	}
	c.cancel(reasonCalleeHangup)
}

// sdpSession is our side of one leg's SDP session: the current body and
// the o= id and version (RFC 3264 §8).
type sdpSession struct {
	body    []byte
	id, ver uint64
}

// reoffer answers an in-dialog re-INVITE or UPDATE (hold, resume, session
// refresh, RFC 3311 / RFC 4028) so the call stays up: it follows a changed
// remote address, answers the offered direction (sendonly → recvonly) and
// bumps the o= version only when the answer changes. A leg on hold may send
// no RTP, so media.timeout does not count it until it resumes.
func (c *call) reoffer(req *sip.Request, tx sip.ServerTransaction, l leg) {
	res := c.reofferResponse(req, tx, l)
	if res == nil {
		return
	}
	if err := tx.Respond(res); err != nil {
		c.log.Debug("re-offer respond", "error", err)
		return
	}
	if req.IsInvite() {
		c.retransmitUntilAck(req.CSeq().SeqNo, func() error { return tx.Respond(res) })
	}
}

// retransmitUntilAck resends a re-INVITE's 2xx from T1 doubling to T2
// until its ACK arrives, for at most 64×T1 (RFC 3261 §13.3.1.4): over UDP
// a lost 200 would otherwise fail a session refresh. It runs on the
// request's handler, which sipgo needs alive to keep the transaction.
func (c *call) retransmitUntilAck(cseq uint32, resend func() error) {
	interval := sip.T1
	timer := time.NewTimer(interval)
	defer timer.Stop()
	giveUp := time.NewTimer(64 * sip.T1)
	defer giveUp.Stop()
	for {
		select {
		case seq := <-c.reAcks:
			if seq == cseq {
				return
			}
		case <-timer.C:
			if err := resend(); err != nil {
				return
			}
			interval = min(2*interval, sip.T2)
			timer.Reset(interval)
		case <-giveUp.C:
			c.log.Info("re-INVITE answer not acknowledged")
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// reAck passes the CSeq of an ACK to a re-INVITE's 2xx to the handler
// retransmitting it.
func (c *call) reAck(cseq uint32) {
	select {
	case c.reAcks <- cseq:
	default:
	}
}

// reofferResponse builds the 200 to a re-offer, or answers the request
// itself (488) and returns nil.
func (c *call) reofferResponse(req *sip.Request, tx sip.ServerTransaction, l leg) *sip.Response {
	c.sdpMu.Lock()
	defer c.sdpMu.Unlock()
	stream, sess, silent := c.streamA, &c.sdpA, &c.silentA
	if l == legB {
		stream, sess, silent = c.streamB, &c.sdpB, &c.silentB
	}
	if len(req.Body()) > 0 && stream != nil {
		d, err := media.ParseSDP(req.Body())
		if err != nil {
			c.s.respond(req, tx, 488, "Not Acceptable Here")
			return nil
		}
		d.Prefer(stream.Audio()) // the relay converts to the codec in use
		held := d.Port == 0 || !d.Addr.IsValid() || d.Addr.IsUnspecified()
		if !held {
			stream.SetRemote(addrPort(d))
		}
		// Any hold (sendonly, recvonly, inactive) may stop a phone's RTP.
		silent.Store(held || d.Direction != media.SendRecv)
		sock := stream.Socket()
		answer, _, _, err := media.AnswerVersion(d, c.s.sdpAddr(sock), sock.Port, sess.id, sess.ver)
		if err != nil {
			c.s.respond(req, tx, 488, "Not Acceptable Here")
			return nil
		}
		if !bytes.Equal(answer, sess.body) {
			sess.ver++
			if answer, _, _, err = media.AnswerVersion(d, c.s.sdpAddr(sock), sock.Port, sess.id, sess.ver); err != nil {
				c.s.respond(req, tx, 488, "Not Acceptable Here")
				return nil
			}
			sess.body = answer
		}
		c.log.Info("re-offer", "leg", int(l), "direction", d.Direction)
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	if req.IsInvite() || len(req.Body()) > 0 {
		res.SetBody(sess.body)
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	if l == legA {
		res.AppendHeader(&c.s.dialogFor(c.invite).ContactHDR)
	} else {
		res.AppendHeader(&c.s.dialog.ContactHDR)
	}
	return res
}

// wait holds the bridged call until a leg hangs up, the media stops, the
// call runs too long or the server ends it. Meanwhile it keeps the CDR row
// current (refreshCDR), so that a crash keeps the talk time.
func (c *call) wait() endReason {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	every := c.s.opts.CDRRefresh
	if every <= 0 {
		every = DefaultCDRRefresh
	}
	refresh := time.NewTicker(every)
	defer refresh.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return c.reason()
		case <-refresh.C:
			c.refreshCDR()
		case <-tick.C:
			if t := c.s.opts.MediaTimeout; t > 0 {
				now := time.Now()
				if (!c.silentA.Load() && now.Sub(c.streamA.LastRTP()) > t) ||
					(!c.silentB.Load() && now.Sub(c.streamB.LastRTP()) > t) {
					return reasonMediaTimeout
				}
			}
		}
	}
}

// end finishes the call exactly once: BYE (or a final response) to the legs
// still up, media closed, the CDR completed. It runs on a context that
// survives the call's cancellation.
func (c *call) end(r endReason, status int) {
	if !c.done.CompareAndSwap(false, true) {
		return
	}
	c.setState(StateEnding)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
	defer cancel()
	c.cancel(r)

	var wg sync.WaitGroup
	if r != reasonCallerHangup && r != reasonCancelled {
		if c.answeredA.Load() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.guardGo("bye")
				if err := c.a.Bye(ctx); err != nil {
					c.log.Debug("bye to caller", "error", err)
				}
			}()
		} else if c.a != nil {
			// The caller hears why in vnum's terms (RFC 3261 §16.7: a
			// downstream 401/407, 3xx or 5xx is not passed on as it is);
			// only a refusal of the caller's own offer keeps its status.
			code, phrase := statusForReason(r)
			if r == reasonInternal && status >= 300 {
				code, phrase = status, reasonPhrase(status)
			}
			if err := c.a.Respond(code, phrase, nil, c.s.retryAfter(code, r)...); err != nil {
				c.log.Debug("final response to caller", "error", err)
			}
		}
	}
	c.bMu.Lock()
	b := c.b
	c.bMu.Unlock()
	if b != nil && r != reasonCalleeHangup && b.LoadState() >= sip.DialogStateEstablished && b.LoadState() != sip.DialogStateEnded {
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

	c.forkWG.Wait()
	for _, st := range []*media.Stream{c.streamA, c.streamB} {
		if st != nil {
			if err := st.Close(); err != nil {
				c.log.Debug("closing stream", "error", err)
			}
		}
	}
	for _, so := range []*media.Socket{c.sockA, c.sockB} {
		if so != nil {
			if err := so.Close(); err != nil {
				c.log.Debug("closing socket", "error", err)
			}
		}
	}

	c.cdrMu.Lock()
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
	c.cdrMu.Unlock()
	c.finishCDR(&cdr)
	// One summary line per call, with the setup latencies (STYLE).
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

// noteCDR changes the call's record in memory only; the next write (the
// answer, or the end) stores it. It keeps the store's load per call low.
func (c *call) noteCDR(f func(*CDR)) {
	c.cdrMu.Lock()
	f(&c.cdr)
	c.cdrMu.Unlock()
}

// updateCDR changes the call's record and writes it, so that a crash leaves
// the progress that matters for billing (binding, answer) in the store.
func (c *call) updateCDR(f func(*CDR)) {
	c.cdrMu.Lock()
	f(&c.cdr)
	cdr := c.cdr
	c.cdrMu.Unlock()
	ctx, cancel := c.s.storeCtx(context.WithoutCancel(c.ctx))
	defer cancel()
	if err := c.s.router.UpdateCall(ctx, &cdr); err != nil {
		c.log.Error("updating CDR", "error", err)
	}
}

// DefaultCDRRefresh is how often an answered call's CDR row is refreshed
// when Options.CDRRefresh is zero: SPEC §7 asks for at least every 10 s.
const DefaultCDRRefresh = 10 * time.Second

// refreshCDR writes the answered call's talk time so far, in the
// background so that a slow store never holds up the call's own loop
// (hang-ups, media timeout). A refresh still being written when the next
// is due makes that one skip; the call's end cancels one in flight, and the
// store ignores a refresh that lands after the end.
func (c *call) refreshCDR() {
	c.cdrMu.Lock()
	cdr := c.cdr
	c.cdrMu.Unlock()
	if cdr.AnsweredAt.IsZero() || !c.refreshing.CompareAndSwap(false, true) {
		return
	}
	alive := time.Now().UTC()
	go func() {
		defer c.refreshing.Store(false)
		ctx, cancel := c.s.storeCtx(c.ctx)
		defer cancel()
		if err := c.s.router.RefreshCall(ctx, &cdr, alive); err != nil && c.ctx.Err() == nil {
			c.log.Warn("refreshing CDR", "error", err)
		}
	}()
}

// cdrFinishAttempts is how often finishing a CDR is tried, each write
// bounded by store.timeout: a lost end would leave the call unbilled.
const cdrFinishAttempts = 3

// finishCDR completes the call's record in the store, retrying a failed
// write: under overload a write can time out, and a record left open would
// only be closed as interrupted at the next start.
func (c *call) finishCDR(cdr *CDR) {
	for attempt := 1; ; attempt++ {
		ctx, cancel := c.s.storeCtx(context.WithoutCancel(c.ctx))
		err := c.s.router.EndCall(ctx, cdr)
		cancel()
		if err == nil {
			return
		}
		if attempt >= cdrFinishAttempts {
			c.log.Error("finishing CDR", "error", err, "attempts", attempt)
			return
		}
		c.log.Warn("finishing CDR, retrying", "error", err, "attempt", attempt)
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
}
