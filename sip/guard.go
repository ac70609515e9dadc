package sip

import (
	"fmt"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// requestHandler is the form of the handlers vnum gives sipgo.
type requestHandler = func(req *sip.Request, tx sip.ServerTransaction)

// guard wraps a request handler. It refuses a request over vnum's limits
// on what a message may cost (withinLimits), what sipgo's parser lets
// through but RFC 3261 does not (a SIP version other than 2.0, a CSeq whose
// method is not the request's), and recovers a panic in the handler: the
// panic is logged with its stack and counted, and the request gets 500 if
// it had no final response yet. sipgo recovers nothing, so without this one
// message would end the process and every call in it.
func (s *Server) guard(h requestHandler) requestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		var at *answerTracker
		if tx != nil && !isNilTx(tx) {
			at = &answerTracker{ServerTransaction: tx}
			tx = at
		}
		defer func() {
			if v := recover(); v != nil {
				s.panicked(v, "method", string(req.Method))
				if at != nil && !req.IsAck() && !at.answered.Load() {
					s.answerAfterPanic(req, at)
				}
			}
		}()
		if s.withinLimits(req, tx) && s.wellFormed(req, tx) {
			h(req, tx)
		}
	}
}

// answerAfterPanic answers 500 to a request whose handling panicked. The
// request may be what made the handler panic, so building the answer may
// panic too: that is recovered as well, and the request goes unanswered.
func (s *Server) answerAfterPanic(req *sip.Request, tx sip.ServerTransaction) {
	defer func() {
		if v := recover(); v != nil {
			s.panicked(v, "method", string(req.Method), "answering", 500)
		}
	}()
	s.respond(req, tx, 500, reasonPhrase(500))
}

// isNilTx reports a nil *sip.ServerTx inside a non-nil interface, as sipgo
// may hand over for a request without a transaction.
func isNilTx(tx sip.ServerTransaction) bool {
	t, ok := tx.(*sip.ServerTx)
	return ok && t == nil
}

// answerTracker notes whether a final response went out on a server
// transaction, so that a recovered panic answers 500 only to a request
// nobody answered (a second final response is an error, RFC 3261 §17.2).
type answerTracker struct {
	sip.ServerTransaction
	answered atomic.Bool
}

// Respond sends res and notes a final one.
func (a *answerTracker) Respond(res *sip.Response) error {
	err := a.ServerTransaction.Respond(res)
	if res.StatusCode >= 200 {
		a.answered.Store(true)
	}
	return err
}

// wellFormed does the checks of RFC 3261 §8.2 that sipgo leaves to the
// application. It refuses a SIP version other than 2.0 with 505 (RFC 4475
// "badvers"), a CSeq method that differs from the request's with
// 400 (RFC 3261 §8.1.1.5, RFC 4475 "mismatch01"), more than one
// Content-Length with 400 (RFC 4475 "mcl01": the body's length is
// unknown), a Request-URI scheme other than sip or sips with 416 (§8.2.2.1,
// RFC 4475 "unkscm"), and a Require naming any option with 420 and
// Unsupported (§8.2.2.3, RFC 4475 "bext01"): vnum implements no SIP
// extension a request could require. An ACK is never answered (RFC 3261 §17.2.1):
// a bad one is dropped; nor is a Require of ACK or CANCEL looked at.
func (s *Server) wellFormed(req *sip.Request, tx sip.ServerTransaction) bool {
	canRespond := !req.IsAck() && tx != nil && !isNilTx(tx)
	if !strings.EqualFold(req.SipVersion, "SIP/2.0") {
		if canRespond {
			res := sip.NewResponseFromRequest(req, 505, "Version Not Supported", nil)
			// The response speaks vnum's version, not the one it refuses.
			res.SipVersion = "SIP/2.0"
			if err := tx.Respond(res); err != nil {
				s.log.Debug("respond failed", "status", 505, "error", err)
			}
		}
		return false
	}
	if cseq := req.CSeq(); cseq != nil && !strings.EqualFold(string(cseq.MethodName), string(req.Method)) {
		if canRespond {
			s.respond(req, tx, 400, "Bad Request", sip.NewHeader("Warning", `399 vnum "CSeq method differs from the request method"`))
		}
		return false
	}
	if len(req.GetHeaders("Content-Length")) > 1 {
		if canRespond {
			s.respond(req, tx, 400, "Bad Request", sip.NewHeader("Warning", `399 vnum "more than one Content-Length"`))
		}
		return false
	}
	if sc := strings.ToLower(req.Recipient.Scheme); sc != "sip" && sc != "sips" {
		if canRespond {
			s.respond(req, tx, 416, "Unsupported URI Scheme")
		}
		return false
	}
	if req.IsAck() || req.IsCancel() {
		return true
	}
	var unsupported []string
	for _, h := range req.GetHeaders("Require") {
		for _, opt := range strings.Split(h.Value(), ",") {
			if opt = strings.TrimSpace(opt); opt != "" {
				unsupported = append(unsupported, opt)
			}
		}
	}
	if len(unsupported) > 0 {
		if canRespond {
			s.respond(req, tx, 420, "Bad Extension", sip.NewHeader("Unsupported", strings.Join(unsupported, ", ")))
		}
		return false
	}
	return true
}

// panicked logs a recovered panic at error with its stack, and counts it.
// The panic's value may quote a number: it is masked (README "Bindings").
func (s *Server) panicked(v any, attrs ...any) {
	s.panics.Add(1)
	s.log.Error("panic recovered", append(attrs, "panic", maskNumbers(fmt.Sprint(v)), "stack", string(debug.Stack()))...)
}

// endOnPanic, deferred in a call's handler, ends a call whose handling
// panicked through the call's one end path (c.end: the other leg hung up,
// ports released, the CDR finished), so the panic costs that call only.
func (c *call) endOnPanic() {
	if v := recover(); v != nil {
		c.s.panicked(v, "call", c.id)
		c.end(reasonInternal, 500)
	}
}

// guardGo, deferred first in a goroutine a call starts, recovers a panic
// in it and ends the call (its handler sees the cancelled context and takes
// the end path): a goroutine's panic would otherwise end the process.
func (c *call) guardGo(what string) {
	if v := recover(); v != nil {
		c.s.panicked(v, "call", c.id, "goroutine", what)
		c.post(hangupEvent{reasonInternal})
	}
}

// safely runs f for a goroutine whose result someone waits for: a panic
// in f is recovered, logged and counted, and becomes f's error, so the
// waiter is not left waiting.
func (c *call) safely(what string, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			c.s.panicked(v, "call", c.id, "goroutine", what)
			err = fmt.Errorf("%w: panic in %s", ErrTrunkFailed, what)
		}
	}()
	return f()
}
