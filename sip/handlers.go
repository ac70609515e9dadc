package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// The Server's request handlers: a new INVITE, which becomes a call, and
// what comes in a call's dialogs and outside them. The handlers change no
// call state: they pass each request to sipgo's dialog where sipgo needs
// it (ACK and BYE wake a waiting 2xx or end the dialog), answer it from
// what never changes, and post what happened to the call's goroutine. An
// event is posted before the sipgo call that could wake the call's
// goroutine, so that the goroutine finds it queued when it wakes.

// routes hands each method to its handler.
func (s *Server) routes() {
	// Every handler goes through the guard: vnum's limits on what a
	// message may cost, the checks of version and CSeq that sipgo leaves
	// to the application, and a recover, so that one bad message ends
	// only its own request or call (docs/sipgo.md §14).
	g := s.guard.wrap
	s.srv.OnInvite(g(s.onInvite))
	s.srv.OnAck(g(s.onAck))
	s.srv.OnBye(g(s.onBye))
	s.srv.OnCancel(g(s.onCancel))
	s.srv.OnOptions(g(s.onOptions))
	s.srv.OnMessage(g(s.onMessage))
	s.srv.OnInfo(g(s.onInfo))
	s.srv.OnUpdate(g(s.onReoffer))
	s.srv.OnRegister(g(s.onRegister))
	s.srv.OnNoRoute(g(s.onNoRoute))
}

// onInvite takes a new call (leg A) or routes a re-INVITE. For a new call
// the handler lives until the call is established: sipgo ends the
// transaction when the handler returns (docs/sipgo.md §1), which an
// answered and acknowledged INVITE no longer needs.
func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		s.onReoffer(req, tx)
		return
	}
	// The one question to the front door, before anything that costs: no
	// store lookup, port or dialog state for an INVITE vnum cannot take
	// well.
	t, err := s.door.Admit(req)
	if err != nil {
		s.refuse(req, tx, err)
		return
	}
	held := false // the established call holds the ticket from startCall on
	defer func() {
		if !held {
			t.Release()
		}
	}()
	own := tx // the call's own transaction, from startCall on
	tx = t.Guard(tx)
	// sipgo hands over requests with only Via and CSeq checked.
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.Contact() == nil {
		s.refuse(req, tx, ErrBadRequest, warning("From, To, Call-ID and Contact are required"))
		return
	}
	// RFC 3261 §17.2.1: 100 Trying at once, before anything that may
	// take time (credentials and bindings in the store, leg B), so that
	// the caller, or a proxy in front, stops retransmitting and knows this
	// node took the INVITE. Nothing else is said before B answers.
	respond(s.log, req, tx, sip.StatusTrying)
	who, ok := s.authorize(req, tx, proxyOrTrunk)
	if !ok {
		return
	}
	// A PSTN caller is known by its number, validated like a consignee's:
	// it is stored as the binding's last caller and dialled by a call back
	// (README "SIP behaviour in short"), so a From user such as "139…;x=1?X-Injected=…" must never
	// get that far. A caller without a valid number is simply not
	// remembered, and cannot be a consignee calling back.
	if who.trunk {
		if n, err := s.router.PhoneNumber(req.From().Address.User); err == nil {
			who.number = n
		}
	}
	if s.walks.blocked(who.walkKey()) {
		// Refused before anything is answered (security.invalid_extensions).
		s.log.Info("call refused: too many invalid extensions", "trunk", who.trunk)
		s.refuse(req, tx, ErrWalking, warning("Too many invalid extensions, try later"))
		s.recordRefused(req, who, sip.StatusForbidden)
		return
	}
	d, offer, cb, looked, ok := s.admitDialled(req, tx, who)
	if !ok {
		return
	}
	held = s.startCall(req, own, t, who, d, offer, cb, looked)
}

// admitDialled checks what a new INVITE dials and offers: a host number
// in the pool, G.711 in the SDP, and for a trunk caller with no extension
// a consignee calling back. A direct dial's binding is looked up here
// first (looked, for the call to take: lookUpDirect). It answers a
// refused INVITE itself.
func (s *Server) admitDialled(req *sip.Request, tx sip.ServerTransaction, who caller) (Dialled, *media.Desc, *Callback, *lookup, bool) {
	d, err := dialledOf(req)
	if err != nil {
		s.refuse(req, tx, err)
		return Dialled{}, nil, nil, nil, false
	}
	looked := s.lookUpEarly(d, who)
	// A binding found, or expired and still held in quarantine, says the
	// dialled X is a host number of the pool (a number is not removed
	// while a binding names it): the pool is asked only for a dial without
	// an extension, when no binding was found, or when the store did not
	// answer (not ours: 404; a store down: 503 at the door).
	if looked == nil || !(looked.err == nil || errors.Is(looked.err, ErrExpired)) {
		ctx, cancel := s.store.ctx(context.Background())
		isHost, err := s.router.IsHostNumber(ctx, d.Host)
		cancel()
		if err != nil {
			s.refuseStoreError(req, tx, "host number lookup", err)
			return Dialled{}, nil, nil, nil, false
		}
		if !isHost {
			s.refuse(req, tx, ErrNotHostNumber)
			return Dialled{}, nil, nil, nil, false
		}
	}
	offer, err := media.ParseSDP(req.Body())
	if err == nil && !slices.ContainsFunc(offer.Codecs, media.Codec.IsG711) {
		err = fmt.Errorf("%w: PCMU or PCMA required", media.ErrNoCodec)
	}
	if err != nil {
		// RFC 3261 §20.43: say why in a Warning. The reason may quote the
		// caller's SDP: it is cut short, so that a huge line cannot push
		// the response past what UDP carries (docs/sipgo.md §11).
		s.refuse(req, tx, err, warning(warningText(err.Error())))
		return Dialled{}, nil, nil, nil, false
	}
	if who.number == "" || d.Extension != "" {
		return d, offer, nil, looked, true
	}
	// A consignee calling X back from the number bound to it.
	ctx, cancel := s.store.ctx(context.Background())
	found, err := s.router.Callback(ctx, d.Host, who.number)
	cancel()
	switch {
	case err == nil:
		return d, offer, &found, nil, true
	case errors.Is(err, ErrInvalidExtension):
		return d, offer, nil, nil, true
	}
	s.refuseStoreError(req, tx, "callback lookup", err)
	return Dialled{}, nil, nil, nil, false
}

// lookUpEarly looks up a direct dial's binding (X-E) as its INVITE is
// admitted, within store.timeout, for the call to take (lookUpDirect):
// nil for a dial without an extension, and for an answer that is to be
// asked again (keptLookup).
func (s *Server) lookUpEarly(d Dialled, who caller) *lookup {
	if d.Extension == "" {
		return nil
	}
	ctx, cancel := s.store.ctx(context.Background())
	defer cancel()
	t, err := s.router.Resolve(ctx, d.Host, d.Extension, who.account.Merchant)
	return keptLookup(d.Extension, t, err)
}

// dialledOf is what req's Request-URI dials (ParseDialled), its ext
// parameter included.
func dialledOf(req *sip.Request) (Dialled, error) {
	uriExt := ""
	if req.Recipient.UriParams != nil {
		uriExt, _ = req.Recipient.UriParams.Get("ext")
	}
	return ParseDialled(req.Recipient.User, uriExt)
}

// newCallID is a new call's id, also its record's: a UUID of version 7
// (RFC 9562), whose first 48 bits are the time in milliseconds, the next
// 12 a count within the millisecond (ids made one after another in this
// process always grow) and 62 random. Records written one after another
// then go to the end of the store's index of ids, not each to a random
// page of it: on SQLite a record's first write costs about a third less
// (a table of 60,000 records, five writes a transaction), and more as the
// table outgrows the cache. The time it shows is the call's start, which
// its record holds anyway.
func newCallID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// startCall makes the call of a new INVITE and runs it on the INVITE's
// goroutine, which owns it until it is established (call.serve). tx is the
// INVITE's own transaction, t its place at the front door. It reports
// whether the call was established and is held on: t is then the call's,
// given back when it ends.
func (s *Server) startCall(req *sip.Request, tx sip.ServerTransaction, t *frontdoor.Ticket, who caller, d Dialled, offer *media.Desc, cb *Callback, looked *lookup) bool {
	id := newCallID()
	// Every line of the call names it three ways: vnum's call id (also
	// leg B's Call-ID, see legBCallID), and leg A's Call-ID, which the
	// caller's carrier quotes.
	log := s.log.With("call", id, "a_call_id", aCallID(req.CallID().Value(), cb != nil), "host", d.Host)
	agent := s.dialogFor(req)
	a, err := agent.ReadInvite(req, tx)
	if err != nil {
		log.Info("invite refused", "error", err)
		s.refuse(req, tx, ErrBadRequest)
		return false
	}
	c := newCall(s.deps, callSetup{id: id, log: log, invite: req, legA: a, dialogInvite: a.InviteRequest,
		contact: agent.ContactHDR, caller: who, dialled: d, offer: offer, callback: cb, looked: looked, setUp: t.SetUp})
	if !s.live.add(a.ID, callerRef{call: c.h, dialog: a}) {
		s.refuse(req, tx, ErrDraining)
		return false
	}
	s.callsTotal.Add(1)
	// A caller over TCP is reached over its connection for in-dialog
	// requests: the connection stays open while the call lasts.
	unhold := s.tcp.Hold(req)
	return c.serve(func() {
		// The call's place is given back as it leaves the registry, not
		// when it ends (its final response may go last, see end), so that
		// calls.max_active counts what ActiveCalls shows.
		t.Release()
		unhold()
		s.live.remove(a.ID, c.h)
	})
}

// recordRefused writes the record of a call attempt refused before it
// became a call, for keying too many wrong extensions: every attempt
// leaves a CDR row, with nothing billed. The dialled number is read
// without the store; an attempt whose number does not parse is recorded
// with no host.
func (s *Server) recordRefused(req *sip.Request, who caller, status int) {
	d, err := dialledOf(req)
	if err != nil {
		d = Dialled{}
	}
	cdr := newCDR(newCallID(), req, who, d, nil)
	cdr.Extension = d.Extension
	log := s.log.With("call", cdr.ID, "a_call_id", aCallID(cdr.CallID, false), "host", d.Host)
	ctx, cancel := s.store.ctx(context.Background())
	defer cancel()
	if err := s.router.StartCall(ctx, &cdr); err != nil {
		log.Warn("recording a refused call", "error", err)
		return
	}
	cdr.EndedAt = time.Now().UTC()
	cdr.Disposition = callrec.DispositionInvalidExtension
	cdr.HangupBy = callrec.HangupSystem
	cdr.SIPStatus = status
	if err := s.router.EndCall(ctx, &cdr); err != nil {
		log.Warn("recording a refused call", "error", err)
	}
}

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	cseq := req.CSeq()
	if cseq == nil {
		return
	}
	if c, ok := s.live.legA(req); ok {
		c.call.post(ackEvent{leg: legA, cseq: cseq.SeqNo})
		if err := c.dialog.ReadAck(req, tx); err != nil {
			c.call.log.Debug("ack", "error", err)
		}
		return
	}
	// The carrier's ACK to our answer of its re-INVITE.
	if f, ok := s.live.legB(req); ok {
		f.call.post(ackEvent{leg: legB, cseq: cseq.SeqNo})
	}
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if c, ok := s.live.legA(req); ok {
		st := c.dialog.LoadState()
		c.call.post(goneEvent{leg: legA, bye: true, confirmed: st >= sip.DialogStateEstablished && st != sip.DialogStateEnded})
		if err := c.dialog.ReadBye(req, tx); err != nil {
			c.call.log.Debug("bye from caller", "error", err)
			respond(s.log, req, tx, sip.StatusOK)
		}
		return
	}
	if f, ok := s.live.legB(req); ok {
		// The winner's BYE, or a fork that lost (callback) hanging up
		// its crossed answer: the call tells which.
		f.call.post(goneEvent{leg: legB, bye: true, dialog: f.dialog})
		if err := f.dialog.ReadBye(req, tx); err != nil {
			f.call.log.Debug("bye from callee", "error", err)
			respond(s.log, req, tx, sip.StatusOK)
		}
		return
	}
	// sipgo does not answer a BYE for an unknown dialog (docs/sipgo.md §4).
	respond(s.log, req, tx, sip.StatusCallTransactionDoesNotExists)
}

func (s *Server) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	c, ok := s.live.legA(req)
	if !ok {
		f, ok := s.live.legB(req)
		if !ok {
			respond(s.log, req, tx, sip.StatusCallTransactionDoesNotExists)
			return
		}
		// The consignee's keys, from a carrier that sends them as INFO:
		// the call weighs them (the notice's answer, the block key).
		if d, ok := parseInfoDTMF(req); ok {
			s.opts.Ports.CountDigit(media.DigitSIPInfo)
			f.call.offer(digitEvent{digit: d, leg: legB})
		}
		respond(s.log, req, tx, sip.StatusOK)
		return
	}
	if d, ok := parseInfoDTMF(req); ok {
		s.opts.Ports.CountDigit(media.DigitSIPInfo)
		c.call.offer(digitEvent{digit: d, leg: legA})
	}
	respond(s.log, req, tx, sip.StatusOK)
}

// onReoffer routes an in-dialog re-INVITE or UPDATE to its call; a
// re-INVITE arrives at OnInvite with a To-tag (sipgo's dialog caches do not
// route it, docs/sipgo.md §15). A request older than the dialog's last one gets
// 500 (RFC 3261 §12.2.2). The call's goroutine builds the answer, because
// it owns the SDP sessions and the media; this handler sends it.
func (s *Server) onReoffer(req *sip.Request, tx sip.ServerTransaction) {
	if c, ok := s.live.legA(req); ok {
		if err := c.dialog.ReadRequest(req, tx); err != nil {
			respond(s.log, req, tx, sip.StatusInternalServerError)
			return
		}
		s.reoffer(c.call, legA, req, tx)
		return
	}
	if f, ok := s.live.legB(req); ok {
		s.reoffer(f.call, legB, req, tx)
		return
	}
	respond(s.log, req, tx, sip.StatusCallTransactionDoesNotExists)
}

// reoffer asks the call for its answer to a re-offer and sends it; a
// re-INVITE's 200 is resent until its ACK comes. A call that ends first
// no longer has the dialog (481).
func (s *Server) reoffer(c *callHandle, l leg, req *sip.Request, tx sip.ServerTransaction) {
	reply := make(chan reofferAnswer, 1)
	c.post(reofferEvent{leg: l, req: req, reply: reply})
	var ans reofferAnswer
	select {
	case ans = <-reply:
	case <-c.closing:
		respond(s.log, req, tx, sip.StatusCallTransactionDoesNotExists)
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

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if s.auth.isBlocked(sourceHost(req)) {
		respond(s.log, req, tx, sip.StatusForbidden)
		return
	}
	respond(s.log, req, tx, sip.StatusOK, sip.NewHeader("Allow", allowed), sip.NewHeader("Accept", "application/sdp"))
}

// onMessage refuses SMS: virtual numbers carry none (README "SIP behaviour in short").
func (s *Server) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	if _, ok := s.authorize(req, tx, proxyOrTrunk); !ok {
		return
	}
	s.messagesRefused.Add(1)
	s.log.Info("message refused", "reason", "no sms on virtual numbers")
	respond(s.log, req, tx, sip.StatusMethodNotAllowed, sip.NewHeader("Allow", allowed),
		warning("Virtual numbers carry no SMS"))
}

// onRegister is the registrar's (registrar.register): registration is
// for accounts, so it always takes digest credentials.
func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	who, ok := s.authorize(req, tx, accountOnly)
	if !ok {
		return
	}
	if what, err := s.reg.register(req, tx, who.account); err != nil {
		s.refuseStoreError(req, tx, what, err)
	}
}

func (s *Server) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	respond(s.log, req, tx, sip.StatusMethodNotAllowed, sip.NewHeader("Allow", allowed))
}

func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	// Matched CANCELs are answered inside sipgo; this one matched nothing.
	respond(s.log, req, tx, sip.StatusCallTransactionDoesNotExists)
}

// credentials says how a request proves who sends it.
type credentials int

const (
	// proxyOrTrunk: Proxy-Authorization (a challenge is 407), or a source
	// among the trunk's (INVITE, MESSAGE).
	proxyOrTrunk credentials = iota
	// accountOnly: Authorization (a challenge is 401), from an account;
	// the trunk has none (REGISTER).
	accountOnly
)

// authorize admits a request from the trunk (when how allows it), or with
// valid digest credentials, and says who sends it. It answers the request
// itself (a challenge, or a refusal) and returns false when the request is
// not admitted.
func (s *Server) authorize(req *sip.Request, tx sip.ServerTransaction, how credentials) (caller, bool) {
	src := sourceHost(req)
	trunk := s.fromTrunk(req)
	if how == proxyOrTrunk && trunk {
		return caller{trunk: true}, true
	}
	// The trunk's addresses are never blocked: a forged source address must
	// not be able to cut the carrier off.
	if !trunk && s.auth.isBlocked(src) {
		s.refuse(req, tx, ErrBlocked)
		return caller{}, false
	}
	authHdr, chalHdr, code := "Authorization", "WWW-Authenticate", sip.StatusUnauthorized
	if how == proxyOrTrunk {
		authHdr, chalHdr, code = "Proxy-Authorization", "Proxy-Authenticate", sip.StatusProxyAuthRequired
	}
	val := ""
	if h := req.GetHeader(authHdr); h != nil {
		val = h.Value()
	}
	ctx, cancel := s.store.ctx(context.Background())
	acct, err := s.auth.verify(ctx, string(req.Method), req.Recipient, val)
	cancel()
	switch {
	case err == nil:
		return caller{account: acct}, true
	case errors.Is(err, ErrNoCredentials), errors.Is(err, ErrStaleNonce), errors.Is(err, ErrReplay):
		// A replayed nonce-count gets a fresh nonce, not a strike: phones
		// that reuse a nonce must not lock out a whole office behind NAT.
		chals, cerr := s.auth.challenges(!errors.Is(err, ErrNoCredentials))
		if cerr != nil {
			respond(s.log, req, tx, sip.StatusInternalServerError)
			return caller{}, false
		}
		hdrs := make([]sip.Header, 0, len(chals))
		for _, c := range chals {
			hdrs = append(hdrs, sip.NewHeader(chalHdr, c))
		}
		respond(s.log, req, tx, code, hdrs...)
	case errors.Is(err, ErrBadRequest):
		s.log.Info("credentials refused", "source", src, "method", string(req.Method), "error", err)
		s.refuse(req, tx, err, warning("digest uri differs from the Request-URI"))
	case errors.Is(err, ErrBadCredentials):
		blocked := !trunk && s.auth.fail(src)
		s.log.Info("authentication failed", "source", src, "user", digestUser(val), "method", string(req.Method), "error", err, "blocked", blocked)
		s.refuse(req, tx, err)
	default:
		s.refuseStoreError(req, tx, "authentication lookup failed", err)
	}
	return caller{}, false
}

// sourceHost is the IP a request came from, for CIDR checks and blocking.
func sourceHost(req *sip.Request) string {
	src := req.Source()
	if h, _, err := net.SplitHostPort(src); err == nil {
		return h
	}
	return src
}

// fromTrunk reports whether req came from one of the trunk's sources.
func (s *Server) fromTrunk(req *sip.Request) bool {
	ip, err := netip.ParseAddr(sourceHost(req))
	if err != nil {
		return false
	}
	return s.trunk.source(ip)
}

// refuse answers a request refused for err with its status from the
// refusals table; a 503 says when to try again (RFC 3261 §21.5.4). A new
// INVITE refused as an overload is counted by the front door.
func (s *Server) refuse(req *sip.Request, tx sip.ServerTransaction, err error, hdrs ...sip.Header) {
	if req.IsInvite() {
		s.door.Count(err)
	}
	code := refusalFor(err).code
	respond(s.log, req, tx, code, append(hdrs, s.door.RetryAfter(code, false)...)...)
}

// refuseStoreError answers a request whose store lookup failed: 503 with
// Retry-After, counted as store_slow, when the store is short
// (frontdoor.StoreShort); 500 for a fault of the store (a missing table,
// a broken query), logged as an error.
func (s *Server) refuseStoreError(req *sip.Request, tx sip.ServerTransaction, what string, err error) {
	if !frontdoor.StoreShort(err) {
		s.log.Error(what, "error", err)
		s.refuse(req, tx, err)
		return
	}
	s.log.Warn(what+": store too slow or unavailable", "error", err, "store_timeout_ms", time.Duration(s.store).Milliseconds())
	s.refuse(req, tx, frontdoor.StoreError(err))
}

// respond answers req on tx with code, its reason phrase and hdrs.
func respond(log *slog.Logger, req *sip.Request, tx sip.ServerTransaction, code int, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reasonPhrase(code), nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		log.Debug("respond failed", "status", code, "error", err)
	}
}

// maxWarningText bounds the text of a Warning vnum builds from input.
const maxWarningText = 120

// warningText makes text that may quote input fit the quoted warn-text of
// a Warning header (RFC 3261 §20.43): valid UTF-8, no control characters,
// no double quotes, at most maxWarningText bytes.
func warningText(text string) string {
	text = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || r == 0x7f:
			return ' '
		case r == '"' || r == '\\':
			return '\''
		}
		return r
	}, strings.ToValidUTF8(text, "?"))
	if len(text) > maxWarningText {
		text = strings.ToValidUTF8(text[:maxWarningText], "") + "…"
	}
	return text
}
