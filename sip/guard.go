package sip

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// requestHandler is the form of the handlers vnum gives sipgo.
type requestHandler = func(req *sip.Request, tx sip.ServerTransaction)

// requestGuard stands before every request handler vnum gives sipgo.
type requestGuard struct {
	hostile *hostileInput // vnum's limits on what a message may cost
	panics  *panicCounter
	log     *slog.Logger
}

// wrap wraps a request handler. It refuses a request over vnum's limits
// on what a message may cost (hostileInput.withinLimits), what sipgo's
// parser lets through but RFC 3261 does not (a SIP version other than
// 2.0, a CSeq whose method is not the request's), and recovers a panic in
// the handler: the panic is logged with its stack and counted, and the
// request gets 500 if it had no final response yet. sipgo recovers
// nothing, so without this one message would end the process and every
// call in it.
func (g *requestGuard) wrap(h requestHandler) requestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		var at *answerTracker
		if tx != nil && !isNilTx(tx) {
			at = &answerTracker{ServerTransaction: tx}
			tx = at
		}
		defer func() {
			if v := recover(); v != nil {
				g.panics.recovered(v, "method", string(req.Method))
				if at != nil && !req.IsAck() && !at.answered.Load() {
					g.answerAfterPanic(req, at)
				}
			}
		}()
		if g.hostile.withinLimits(req, tx) && g.wellFormed(req, tx) {
			h(req, tx)
		}
	}
}

// answerAfterPanic answers 500 to a request whose handling panicked. The
// request may be what made the handler panic, so building the answer may
// panic too: that is recovered as well, and the request goes unanswered.
func (g *requestGuard) answerAfterPanic(req *sip.Request, tx sip.ServerTransaction) {
	defer func() {
		if v := recover(); v != nil {
			g.panics.recovered(v, "method", string(req.Method), "answering", sip.StatusInternalServerError)
		}
	}()
	respond(g.log, req, tx, sip.StatusInternalServerError)
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
func (g *requestGuard) wellFormed(req *sip.Request, tx sip.ServerTransaction) bool {
	canRespond := !req.IsAck() && tx != nil && !isNilTx(tx)
	if !strings.EqualFold(req.SipVersion, "SIP/2.0") {
		if canRespond {
			res := sip.NewResponseFromRequest(req, sip.StatusVersionNotSupported, reasonPhrase(sip.StatusVersionNotSupported), nil)
			// The response speaks vnum's version, not the one it refuses.
			res.SipVersion = "SIP/2.0"
			if err := tx.Respond(res); err != nil {
				g.log.Debug("respond failed", "status", sip.StatusVersionNotSupported, "error", err)
			}
		}
		return false
	}
	if cseq := req.CSeq(); cseq != nil && !strings.EqualFold(string(cseq.MethodName), string(req.Method)) {
		if canRespond {
			respond(g.log, req, tx, sip.StatusBadRequest, warning("CSeq method differs from the request method"))
		}
		return false
	}
	if len(req.GetHeaders("Content-Length")) > 1 {
		if canRespond {
			respond(g.log, req, tx, sip.StatusBadRequest, warning("more than one Content-Length"))
		}
		return false
	}
	if sc := strings.ToLower(req.Recipient.Scheme); sc != "sip" && sc != "sips" {
		if canRespond {
			respond(g.log, req, tx, statusUnsupportedURIScheme)
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
			respond(g.log, req, tx, sip.StatusBadExtension, sip.NewHeader("Unsupported", strings.Join(unsupported, ", ")))
		}
		return false
	}
	return true
}

// panicCounter counts the panics recovered in request handling and in
// the goroutines of calls, each of which ended only its own request or
// call.
type panicCounter struct {
	n   atomic.Int64
	log *slog.Logger
}

// recovered logs a recovered panic at error with its stack, and counts
// it. The panic's value may quote a number: it is masked (README
// "Bindings").
func (p *panicCounter) recovered(v any, attrs ...any) {
	p.n.Add(1)
	p.log.Error("panic recovered", append(attrs, "panic", maskNumbers(fmt.Sprint(v)), "stack", string(debug.Stack()))...)
}
