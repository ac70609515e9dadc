package sip

import (
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// lookupA is the call a leg A request is in, or nil.
func (s *Server) lookupA(req *sip.Request) *call {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return nil
	}
	return s.live.byLegA(id)
}

// lookupB is the fork of leg B a request is in.
func (s *Server) lookupB(req *sip.Request) (forkRef, bool) {
	cid := req.CallID()
	if cid == nil {
		return forkRef{}, false
	}
	return s.live.byLegB(cid.Value())
}

// The handlers below change no call state: they pass each request to
// sipgo's dialog where sipgo needs it (ACK and BYE wake a waiting 2xx or
// end the dialog), answer it from what never changes, and post what
// happened to the call's goroutine. An event is posted before the sipgo
// call that could wake the call's goroutine, so that the goroutine finds
// it queued when it wakes.

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	cseq := req.CSeq()
	if cseq == nil {
		return
	}
	if c := s.lookupA(req); c != nil {
		c.post(ackEvent{leg: legA, cseq: cseq.SeqNo})
		if err := c.a.d.ReadAck(req, tx); err != nil {
			c.log.Debug("ack", "error", err)
		}
		return
	}
	// The carrier's ACK to our answer of its re-INVITE.
	if f, ok := s.lookupB(req); ok {
		f.call.post(ackEvent{leg: legB, cseq: cseq.SeqNo})
	}
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if c := s.lookupA(req); c != nil {
		st := c.a.d.LoadState()
		c.post(byeEvent{leg: legA, confirmed: st >= sip.DialogStateEstablished && st != sip.DialogStateEnded})
		if err := c.a.d.ReadBye(req, tx); err != nil {
			c.log.Debug("bye from caller", "error", err)
			s.respond(req, tx, sip.StatusOK, "OK")
		}
		return
	}
	if f, ok := s.lookupB(req); ok {
		// The winner's BYE, or a fork that lost (callback) hanging up
		// its crossed answer: the call tells which.
		f.call.post(byeEvent{leg: legB, dialog: f.dialog})
		if err := f.dialog.ReadBye(req, tx); err != nil {
			f.call.log.Debug("bye from callee", "error", err)
			s.respond(req, tx, sip.StatusOK, "OK")
		}
		return
	}
	// sipgo does not answer a BYE for an unknown dialog (docs/sipgo.md §4).
	s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
}

func (s *Server) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	c := s.lookupA(req)
	if c == nil {
		if _, ok := s.lookupB(req); ok {
			s.respond(req, tx, sip.StatusOK, "OK")
			return
		}
		s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if d, ok := parseInfoDTMF(req); ok {
		c.offer(digitEvent{d})
	}
	s.respond(req, tx, sip.StatusOK, "OK")
}

// onReoffer routes an in-dialog re-INVITE or UPDATE to its call; a
// re-INVITE arrives at OnInvite with a To-tag (sipgo's dialog caches do not
// route it, docs/sipgo.md §15). A request older than the dialog's last one gets
// 500 (RFC 3261 §12.2.2). The call's goroutine builds the answer, because
// it owns the SDP sessions and the media; this handler sends it.
func (s *Server) onReoffer(req *sip.Request, tx sip.ServerTransaction) {
	if c := s.lookupA(req); c != nil {
		if err := c.a.d.ReadRequest(req, tx); err != nil {
			s.respond(req, tx, sip.StatusInternalServerError, "Server Internal Error")
			return
		}
		s.reoffer(c, legA, req, tx)
		return
	}
	if f, ok := s.lookupB(req); ok {
		s.reoffer(f.call, legB, req, tx)
		return
	}
	s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
}

// reoffer asks the call for its answer to a re-offer and sends it; a
// re-INVITE's 200 is resent until its ACK comes. A call that ends first
// no longer has the dialog (481).
func (s *Server) reoffer(c *call, l leg, req *sip.Request, tx sip.ServerTransaction) {
	reply := make(chan reofferAnswer, 1)
	c.post(reofferEvent{leg: l, req: req, reply: reply})
	var ans reofferAnswer
	select {
	case ans = <-reply:
	case <-c.closing:
		s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if err := tx.Respond(ans.res); err != nil {
		c.log.Debug("re-offer respond", "error", err)
		return
	}
	if ans.acked != nil {
		c.retransmitUntilAck(ans.acked, func() error { return tx.Respond(ans.res) })
	}
}

// retransmitUntilAck resends a re-INVITE's 2xx from T1 doubling to T2
// until its ACK arrives, for at most 64×T1 (RFC 3261 §13.3.1.4): over UDP
// a lost 200 would otherwise fail a session refresh. It runs on the
// request's handler, which sipgo needs alive to keep the transaction.
func (c *call) retransmitUntilAck(acked <-chan struct{}, resend func() error) {
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
			c.log.Info("re-INVITE answer not acknowledged")
			return
		case <-c.closing:
			return
		}
	}
}

// parseInfoDTMF reads a digit from a SIP INFO body: application/dtmf-relay
// ("Signal=5") or application/dtmf ("5").
func parseInfoDTMF(req *sip.Request) (rune, bool) {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = strings.ToLower(strings.TrimSpace(h.Value()))
	}
	body := strings.TrimSpace(string(req.Body()))
	var sig string
	switch {
	case strings.HasPrefix(ct, "application/dtmf-relay"):
		for _, line := range strings.Split(body, "\n") {
			k, v, ok := strings.Cut(line, "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "signal") {
				sig = strings.TrimSpace(v)
			}
		}
	case strings.HasPrefix(ct, "application/dtmf"):
		sig = body
	default:
		return 0, false
	}
	if len(sig) != 1 {
		return 0, false
	}
	r := rune(sig[0])
	switch {
	case r >= '0' && r <= '9', r == '*', r == '#':
		return r, true
	case r >= 'A' && r <= 'D', r >= 'a' && r <= 'd':
		return r, true
	}
	return 0, false
}
