package sip

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// onInvite takes a new call (leg A) or routes a re-INVITE. For a new call
// the handler lives as long as the call: sipgo ends the transaction when
// the handler returns (docs/sipgo.md §1).
func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		s.onReoffer(req, tx)
		return
	}
	// Before anything that costs: no store lookup, port or dialog state
	// for an INVITE vnum cannot take well (README "SIP behaviour in short").
	t, err := s.door.Admit(req)
	if err != nil {
		s.refuse(req, tx, err)
		return
	}
	defer t.Release()
	call := tx // the call's own transaction, from runCall on
	tx = t.Guard(tx)
	// sipgo hands over requests with only Via and CSeq checked.
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.Contact() == nil {
		s.refuse(req, tx, ErrBadRequest, sip.NewHeader("Warning", `399 vnum "From, To, Call-ID and Contact are required"`))
		return
	}
	// RFC 3261 §17.2.1: 100 Trying at once, before anything that may
	// take time (credentials and bindings in the store, leg B), so that
	// the caller, or a proxy in front, stops retransmitting and knows this
	// node took the INVITE. Nothing else is said before B answers.
	s.respond(req, tx, sip.StatusTrying, "Trying")
	acct, trunk, ok := s.authorize(req, tx, true, true)
	if !ok {
		return
	}
	// A PSTN caller is known by its number, validated like a consignee's:
	// it is stored as the binding's last caller and dialled by a call back
	// (README "SIP behaviour in short"), so a From user such as "139…;x=1?X-Injected=…" must never
	// get that far. A caller without a valid number is simply not
	// remembered, and cannot be a consignee calling back.
	number := ""
	if trunk {
		if n, err := s.router.PhoneNumber(req.From().Address.User); err == nil {
			number = n
		}
	}
	if s.walks.blocked(walkKey(acct, trunk, number)) {
		// Refused before anything is answered (security.invalid_extensions).
		s.log.Info("call refused: too many invalid extensions", "trunk", trunk)
		s.refuse(req, tx, ErrWalking, sip.NewHeader("Warning", `399 vnum "Too many invalid extensions, try later"`))
		s.recordRefused(req, acct, trunk, number, sip.StatusForbidden)
		return
	}
	d, offer, cb, ok := s.admitDialled(req, tx, number)
	if !ok {
		return
	}
	s.runCall(req, call, t, acct, trunk, number, d, offer, cb)
}

// admitDialled checks what a new INVITE dials and offers: a host number
// in the pool, G.711 in the SDP, and for a trunk caller with no extension
// a consignee calling back. It answers a refused INVITE itself.
func (s *Server) admitDialled(req *sip.Request, tx sip.ServerTransaction, number string) (Dialled, *media.Desc, *Callback, bool) {
	uriExt := ""
	if req.Recipient.UriParams != nil {
		uriExt, _ = req.Recipient.UriParams.Get("ext")
	}
	d, err := ParseDialled(req.Recipient.User, uriExt)
	if err != nil {
		s.refuse(req, tx, err)
		return Dialled{}, nil, nil, false
	}
	ctx, cancel := s.storeCtx(context.Background())
	isHost, err := s.router.IsHostNumber(ctx, d.Host)
	cancel()
	if err != nil {
		s.refuseStoreError(req, tx, "host number lookup", err)
		return Dialled{}, nil, nil, false
	}
	if !isHost {
		s.refuse(req, tx, ErrNotHostNumber)
		return Dialled{}, nil, nil, false
	}
	offer, err := media.ParseSDP(req.Body())
	if err == nil && !slices.ContainsFunc(offer.Codecs, media.Codec.IsG711) {
		err = fmt.Errorf("%w: PCMU or PCMA required", media.ErrNoCodec)
	}
	if err != nil {
		// RFC 3261 §20.43: say why in a Warning. The reason may quote the
		// caller's SDP: it is cut short, so that a huge line cannot push
		// the response past what UDP carries (docs/sipgo.md §11).
		s.refuse(req, tx, err, sip.NewHeader("Warning", `399 vnum "`+warningText(err.Error())+`"`))
		return Dialled{}, nil, nil, false
	}
	if number == "" || d.Extension != "" {
		return d, offer, nil, true
	}
	// A consignee calling X back from the number bound to it.
	ctx, cancel = s.storeCtx(context.Background())
	found, err := s.router.Callback(ctx, d.Host, number)
	cancel()
	switch {
	case err == nil:
		return d, offer, &found, true
	case errors.Is(err, ErrInvalidExtension):
		return d, offer, nil, true
	}
	s.refuseStoreError(req, tx, "callback lookup", err)
	return Dialled{}, nil, nil, false
}

// runCall runs one call on the goroutine of its INVITE, which owns it to
// its end; number is a trunk caller's validated number ("" when it has
// none).
func (s *Server) runCall(req *sip.Request, tx sip.ServerTransaction, t *frontdoor.Ticket, acct Account, trunk bool, number string, d Dialled, offer *media.Desc, cb *Callback) {
	c := s.newCall(req, acct, trunk, number, d, offer, cb)
	defer c.cancel()
	a, err := s.dialogFor(req).ReadInvite(req, tx)
	if err != nil {
		c.log.Info("invite refused", "error", err)
		s.refuse(req, tx, ErrBadRequest)
		return
	}
	c.a.d = a
	c.publish()
	if !s.live.add(a.ID, c) {
		s.refuse(req, tx, ErrDraining)
		return
	}
	s.callsTotal.Add(1)
	defer s.live.remove(a.ID, c)
	// A caller over TCP is reached over its connection for in-dialog
	// requests: the connection stays open while the call lasts.
	defer s.tcp.Hold(req)()
	// The call's place is given back as it leaves the registry, not when
	// the handler returns (its final response may go last, see end), so
	// that calls.max_active counts what ActiveCalls shows.
	defer t.Release()
	// calls.max_duration counts from the INVITE, IVR and ringing included.
	limit := time.AfterFunc(s.opts.MaxDuration, func() { c.post(hangupEvent{reasonMaxDuration}) })
	defer limit.Stop()
	// Leg A gone (BYE, CANCEL, transaction ended) is an event for the call.
	stop := context.AfterFunc(a.Context(), func() { c.post(goneEvent{leg: legA, cancelled: c.a.cancelled()}) })
	defer stop()

	startCtx, cancelStart := s.storeCtx(c.ctx)
	err = s.router.StartCall(startCtx, &c.cdr)
	cancelStart()
	if err != nil {
		// No record, no call: an overloaded or unreachable store turns
		// calls away (503, README "SIP behaviour in short": store_slow) rather than losing their
		// bills; a broken one gets 500.
		c.log.Error("starting CDR", "error", err)
		err = frontdoor.StoreError(err)
		code := refusalFor(err).code
		s.door.Count(err)
		if rerr := a.Respond(code, reasonPhrase(code), nil, s.door.RetryAfter(code, false)...); rerr != nil {
			c.log.Debug("refusing call", "error", rerr)
		}
		return
	}
	c.log.Info("call started", "caller", c.cdr.Caller, "trunk", trunk, "direct", d.Extension != "")
	// Set up: from here on the call no longer counts as saturating.
	t.SetUp()
	defer c.endOnPanic() // a panic ends this call only (issue 6)
	c.end(c.run(cb))
}

// recordRefused writes the record of a call attempt refused before it
// became a call, for keying too many wrong extensions: every attempt
// leaves a CDR row, with nothing billed. The dialled number is read
// without the store; an attempt whose number does not parse is recorded
// with no host.
func (s *Server) recordRefused(req *sip.Request, acct Account, trunk bool, number string, status int) {
	uriExt := ""
	if req.Recipient.UriParams != nil {
		uriExt, _ = req.Recipient.UriParams.Get("ext")
	}
	d, err := ParseDialled(req.Recipient.User, uriExt)
	if err != nil {
		d = Dialled{}
	}
	cdr := newCDR(uuid.NewString(), req, acct, trunk, number, d, nil)
	cdr.Extension = d.Extension
	log := s.log.With("call", cdr.ID, "a_call_id", aCallID(cdr.CallID, false), "host", d.Host)
	ctx, cancel := s.storeCtx(context.Background())
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

// newCall builds the call of a new INVITE, not yet registered.
func (s *Server) newCall(req *sip.Request, acct Account, trunk bool, number string, d Dialled, offer *media.Desc, cb *Callback) *call {
	id := uuid.NewString()
	c := &call{
		s:  s,
		id: id,
		// Every line of the call names it three ways: vnum's call id (also
		// leg B's Call-ID, see legBCallID), and leg A's Call-ID, which
		// the caller's carrier quotes.
		log:     s.log.With("call", id, "a_call_id", aCallID(req.CallID().Value(), cb != nil), "host", d.Host),
		invite:  req,
		account: acct,
		trunk:   trunk,
		dialled: d,
		events:  make(chan event, eventQueue),
		closing: make(chan struct{}),
		// Only an IVR call in answer mode is answered before B: its
		// caller must key E (answer supervision, see answer).
		a: callerLeg{offer: offer, waitsForB: d.Extension != "" || cb != nil || s.opts.AnswerMode == "early"},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.cdr = newCDR(id, req, acct, trunk, number, d, cb)
	return c
}

// newCDR is the record a call attempt starts with.
func newCDR(id string, req *sip.Request, acct Account, trunk bool, number string, d Dialled, cb *Callback) CDR {
	caller, kind, direction := acct.User, callrec.CallerAccount, callrec.DirectionToConsignee
	if trunk {
		caller, kind = number, callrec.CallerNumber
	}
	if cb != nil {
		// The consignee's number never goes into a record merchants read.
		caller, kind, direction = "consignee", callrec.CallerConsignee, callrec.DirectionCallback
	}
	return CDR{
		ID:         id,
		CallID:     req.CallID().Value(),
		Merchant:   acct.Merchant,
		Host:       d.Host,
		Direction:  direction,
		Caller:     caller,
		CallerKind: kind,
		StartedAt:  time.Now().UTC(),
	}
}

// run takes the call through its steps, in order: answer, IVR (or the
// callback's targets), leg B, the bridge. It returns why the call ends
// and the status to record (0: the reason's).
func (c *call) run(cb *Callback) (endReason, int) {
	if r, status := c.answer(); r != reasonNone {
		return r, status
	}
	if cb != nil {
		if r, status := c.callback(*cb); r != reasonNone {
			return r, status
		}
		return c.wait(), 0
	}
	target, r := c.collect()
	if r != reasonNone {
		return r, 0
	}
	if r, status := c.dialB(target); r != reasonNone {
		return r, status
	}
	return c.wait(), 0
}

// ivrPromptAllowance is what the IVR's time limit allows per attempt for
// the prompts themselves.
const ivrPromptAllowance = 20 * time.Second

// collect runs the IVR: it resolves the dialled extension, or asks for one
// up to the configured number of attempts. The whole IVR has a time limit
// (attempts × the digit timeouts and the prompts), so keying '*' forever
// cannot hold a call and its ports.
func (c *call) collect() (Target, endReason) {
	o := c.s.opts
	limit := time.Duration(o.Attempts) * (o.FirstDigitTimeout + time.Duration(o.ExtensionDigits)*o.InterDigitTimeout + ivrPromptAllowance)
	t := time.AfterFunc(limit, func() { c.post(ivrTimeoutEvent{}) })
	defer t.Stop()
	if ext := c.dialled.Extension; ext != "" {
		// A direct dial has one attempt: its caller is not in the IVR
		// (not answered), and a wrong extension ends the call with 404
		// after the prompt, as early media.
		t, r, again := c.tryExtension(ext, 0)
		if !again {
			return t, r
		}
		if r := c.play(media.PromptNotValid); r != reasonNone {
			return Target{}, r
		}
		return Target{}, reasonInvalidExtension
	}
	prompt := media.PromptEnterExtension
	for attempts := o.Attempts; attempts > 0; attempts-- {
		ext, r := c.readExtension(prompt)
		if r != reasonNone {
			return Target{}, r
		}
		prompt = media.PromptInvalid
		if ext == "" {
			c.log.Info("no extension keyed", "attempts_left", attempts-1)
			continue
		}
		if t, r, again := c.tryExtension(ext, attempts-1); !again {
			return t, r
		}
	}
	if r := c.play("goodbye"); r != reasonNone {
		return Target{}, r
	}
	return Target{}, reasonInvalidExtension
}

// tryExtension resolves one extension; again says the caller may try
// another (it was invalid, and the caller is not walking extensions).
func (c *call) tryExtension(ext string, left int) (Target, endReason, bool) {
	t, r := c.resolve(ext)
	switch {
	case r != reasonInvalidExtension:
		return t, r, false
	case c.walking():
		return Target{}, reasonInvalidExtension, false
	}
	c.log.Info("invalid extension", "attempts_left", left)
	return Target{}, reasonNone, true
}

// walking counts a wrong extension against the caller and reports whether
// the caller has now keyed security.invalid_extensions of them within the
// hour: then the call ends at once, without another attempt.
func (c *call) walking() bool {
	number := c.cdr.Caller // a trunk caller's validated number, or ""
	if !c.s.walks.wrongExtension(walkKey(c.account, c.trunk, number)) {
		return false
	}
	c.log.Info("too many invalid extensions: call ended", "trunk", c.trunk)
	return true
}

// callback rings whoever last reached the consignee through the binding,
// or the merchant's registered softphones, showing X to them.
func (c *call) callback(cb Callback) (endReason, int) {
	c.updateCDR(func(cdr *CDR) {
		cdr.BindingID, cdr.Order, cdr.Merchant, cdr.Extension = cb.BindingID, cb.Order, cb.Merchant, cb.Extension
	})
	targets := c.callbackTargets(cb)
	c.log.Info("callback", "targets", len(targets), "to_account", cb.Account != "", "to_number", cb.Number != "")
	if len(targets) == 0 {
		if r := c.play("unavailable"); r != reasonNone {
			return r, 0
		}
		return reasonNoAnswer, sip.StatusTemporarilyUnavailable
	}
	return c.dial(cb.Host, targets)
}

// callbackTargets are the legs B a callback rings.
func (c *call) callbackTargets(cb Callback) []legBTarget {
	var targets []legBTarget
	switch {
	case cb.Account != "":
		if reg, ok := c.s.lookupRegistration(c.ctx, cb.Account); ok {
			targets = append(targets, contactTarget(cb.Account, reg))
		}
	case cb.Number != "":
		// Checked again where it is dialled: whatever the store holds, only
		// a phone number goes into leg B's Request-URI and To.
		n, err := c.s.router.PhoneNumber(cb.Number)
		if err != nil {
			c.log.Warn("callback: last caller is not a phone number")
			break
		}
		if tc := c.s.trunk.Load(); tc.host != "" {
			targets = append(targets, c.s.trunkTarget(tc, formatNumber(n, tc.numberFormat)))
		}
	default:
		for _, user := range cb.Accounts {
			if reg, ok := c.s.lookupRegistration(c.ctx, user); ok {
				targets = append(targets, contactTarget(user, reg))
			}
		}
	}
	return targets
}

// resolve looks the binding up; an expired one gets its prompt and ends
// the call. A store that fails, or does not answer within store.timeout,
// ends the call.
func (c *call) resolve(ext string) (Target, endReason) {
	c.cdr.Extension = ext
	c.publish()
	ctx, cancel := c.s.storeCtx(c.ctx)
	t, err := c.s.router.Resolve(ctx, c.dialled.Host, ext, c.account.Merchant)
	cancel()
	switch {
	case err == nil:
		c.updateCDR(func(cdr *CDR) {
			cdr.BindingID, cdr.Order, cdr.Merchant = t.BindingID, t.Order, t.Merchant
		})
		return t, reasonNone
	case errors.Is(err, ErrInvalidExtension):
		return Target{}, reasonInvalidExtension
	case errors.Is(err, ErrExpired):
		c.log.Info("extension expired")
		if r := c.play("expired"); r != reasonNone {
			return Target{}, r
		}
		if r := c.play("goodbye"); r != reasonNone {
			return Target{}, r
		}
		return Target{}, reasonExpired
	case frontdoor.StoreShort(err):
		// A passing shortage: a caller not yet answered (early mode)
		// hears 503 with Retry-After, not 500.
		c.log.Warn("binding lookup: store too slow or unavailable", "error", err)
		return Target{}, reasonStoreSlow
	default:
		c.log.Error("binding lookup", "error", err)
		return Target{}, reasonInternal
	}
}

// readExtension plays a prompt and collects digits: barge-in stops the
// prompt, '#' ends the entry early, '*' starts it again; the first-digit
// timer starts when the prompt ends, the inter-digit timer after each digit.
func (c *call) readExtension(prompt string) (string, endReason) {
	// In early mode the caller keys E in the early session (183).
	if r := c.earlyMedia(); r != reasonNone {
		return "", r
	}
	played, stopPlay := c.startPrompt(prompt)
	defer stopPlay()
	var digits []rune
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var timeout <-chan time.Time
	arm := func(d time.Duration) {
		timer.Reset(d)
		timeout = timer.C
	}
	for {
		// Digits the call took before this prompt (INFO sent right after
		// the ACK, while the answer was still being sent) count first:
		// digits count from the answer (README "SIP behaviour in short").
		keyed := c.digits
		c.digits = nil
		if len(keyed) == 0 {
			select {
			case ev := <-c.events:
				if r := c.handle(ev); r != reasonNone {
					return "", r
				}
				keyed, c.digits = c.digits, nil
			case <-played:
				played = nil
				if len(digits) == 0 {
					arm(c.s.opts.FirstDigitTimeout)
				}
				continue
			case <-timeout:
				return string(digits), reasonNone
			case d := <-c.a.stream.Digits():
				keyed = []rune{d}
			}
		}
		for _, d := range keyed {
			stopPlay()
			switch {
			case d == '#':
				return string(digits), reasonNone
			case d == '*':
				digits = digits[:0]
			case d >= '0' && d <= '9':
				digits = append(digits, d)
			}
			if len(digits) >= c.s.opts.ExtensionDigits {
				return string(digits), reasonNone
			}
			timer.Stop()
			arm(c.s.opts.InterDigitTimeout)
		}
	}
}

// startPrompt plays a prompt to the caller in the background; played is
// closed when it ends, stop cuts it short (barge-in) and waits for it.
func (c *call) startPrompt(name string) (played <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	pcm, err := media.Prompt(c.s.opts.Language, name)
	if err != nil {
		c.log.Error("prompt", "name", name, "error", err)
		close(done)
	} else {
		stream := c.a.stream
		go func() {
			defer close(done)
			defer c.guardGo("prompt")
			if err := stream.Play(ctx, pcm); err != nil && ctx.Err() == nil {
				c.log.Debug("play", "error", err)
			}
		}()
	}
	return done, func() { cancel(); <-done }
}

// refuse answers a new INVITE refused for err with its status from the
// refusals table; a 503 says when to try again (RFC 3261 §21.5.4).
func (s *Server) refuse(req *sip.Request, tx sip.ServerTransaction, err error, hdrs ...sip.Header) {
	if req.IsInvite() {
		s.door.Count(err)
	}
	code := refusalFor(err).code
	s.respond(req, tx, code, reasonPhrase(code), append(hdrs, s.door.RetryAfter(code, false)...)...)
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

// sessionID is a random SDP session id (RFC 4566 §5.2).
func sessionID() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.BigEndian.Uint64(b[:]) >> 2
}
