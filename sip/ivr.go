package sip

import (
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// ivrPromptAllowance is what the IVR's time limit allows per attempt for
// the prompts themselves.
const ivrPromptAllowance = 20 * time.Second

// collect runs the IVR: it resolves the dialled extension, or asks for one
// up to the configured number of attempts. The whole IVR has a time limit
// (attempts × the digit timeouts and the prompts), so keying '*' forever
// cannot hold a call and its ports.
func (c *call) collect() (Target, endReason) {
	o := c.deps.opts
	limit := time.Duration(o.attempts) * (o.firstDigitTimeout + time.Duration(o.extensionDigits)*o.interDigitTimeout + ivrPromptAllowance)
	h := c.h
	t := time.AfterFunc(limit, func() { h.post(ivrTimeoutEvent{}) })
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
	for attempts := o.attempts; attempts > 0; attempts-- {
		ext, r := c.readExtension(prompt)
		if r != reasonNone {
			return Target{}, r
		}
		prompt = media.PromptInvalid
		if ext == "" {
			c.deps.kpi.ivrOutcome(ivrTimeout)
			c.log.Info("no extension keyed", "attempts_left", attempts-1)
			continue
		}
		if t, r, again := c.tryExtension(ext, attempts-1); !again {
			return t, r
		}
	}
	if r := c.play(media.PromptGoodbye); r != reasonNone {
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
	if !c.deps.walks.wrongExtension(c.caller.walkKey()) {
		return false
	}
	c.log.Info("too many invalid extensions: call ended", "trunk", c.caller.trunk)
	return true
}

// lookup is the answer of a binding lookup for an extension.
type lookup struct {
	ext string
	t   Target
	err error
}

// lookUpDirect gives a direct dial (X-E) its binding before the call's
// record is first written, so that the record starts with it: one write
// fewer than starting it and then adding the binding. The binding was
// looked up as the INVITE was admitted (Server.lookUpEarly), or is looked
// up now. Its answer is resolve's: the binding, no such extension,
// expired, or a store too slow or unavailable (the call then ends as
// store_slow there, the store not asked a second time); another failure
// is left to resolve, which asks again once the record is written, as
// for a call through the IVR.
func (c *call) lookUpDirect() {
	ext := c.dialled.Extension
	if ext == "" || c.callback != nil {
		return
	}
	l := c.looked
	if l == nil || l.ext != ext {
		t, err := c.lookUp(ext)
		if l = keptLookup(ext, t, err); l == nil {
			c.looked = nil
			return
		}
	}
	c.looked = l
	c.cdr.Extension = ext
	if l.err == nil {
		c.cdr.BindingID, c.cdr.Order, c.cdr.Merchant = l.t.BindingID, l.t.Order, l.t.Merchant
	}
}

// keptLookup returns what a call keeps of a lookup of ext's binding
// instead of asking again: the binding, no such extension, an expired
// binding, or a store that did not answer in time; nil for another
// failure.
func keptLookup(ext string, t Target, err error) *lookup {
	if err != nil && !errors.Is(err, ErrInvalidExtension) && !errors.Is(err, ErrExpired) && !frontdoor.StoreShort(err) {
		return nil
	}
	return &lookup{ext: ext, t: t, err: err}
}

// lookUp asks the store for the binding of ext on the dialled host,
// within store.timeout.
func (c *call) lookUp(ext string) (Target, error) {
	ctx, cancel := c.deps.opts.storeTimeout.ctx(c.ctx)
	defer cancel()
	return c.deps.directory.Resolve(ctx, c.dialled.Host, ext, c.caller.account.Merchant)
}

// resolve looks the binding up; an expired one gets its prompt and ends
// the call. A store that fails, or does not answer within store.timeout,
// ends the call.
func (c *call) resolve(ext string) (Target, endReason) {
	c.cdr.Extension = ext
	c.publish()
	var t Target
	var err error
	looked := c.looked
	c.looked = nil
	if looked != nil && looked.ext == ext {
		// Looked up before the record was written, which has it.
		t, err = looked.t, looked.err
	} else {
		looked = nil
		t, err = c.lookUp(ext)
	}
	switch {
	case err == nil:
		c.deps.kpi.ivrOutcome(ivrValid)
		if looked == nil {
			c.updateCDR(func(cdr *CDR) {
				cdr.BindingID, cdr.Order, cdr.Merchant = t.BindingID, t.Order, t.Merchant
			})
		}
		return t, reasonNone
	case errors.Is(err, ErrInvalidExtension):
		c.deps.kpi.ivrOutcome(ivrInvalid)
		return Target{}, reasonInvalidExtension
	case errors.Is(err, ErrExpired):
		c.deps.kpi.ivrOutcome(ivrExpired)
		c.log.Info("extension expired")
		if r := c.play(media.PromptExpired); r != reasonNone {
			return Target{}, r
		}
		if r := c.play(media.PromptGoodbye); r != reasonNone {
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
	if r := c.a.earlyMedia(); r != reasonNone {
		return "", r
	}
	played, stopPlay := c.a.startPrompt(prompt)
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
			case ev := <-c.h.events:
				if r := c.handle(ev); r != reasonNone {
					return "", r
				}
				keyed, c.digits = c.digits, nil
			case <-played:
				played = nil
				if len(digits) == 0 {
					arm(c.deps.opts.firstDigitTimeout)
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
			if len(digits) >= c.deps.opts.extensionDigits {
				return string(digits), reasonNone
			}
			timer.Stop()
			arm(c.deps.opts.interDigitTimeout)
		}
	}
}

// play plays a whole prompt to the caller (no barge-in), handling the
// call's events meanwhile; it returns early, with the reason, when the
// call must end. A caller not yet answered hears it as early media.
func (c *call) play(name string) endReason {
	if c.a.stream == nil {
		return reasonNone
	}
	if r := c.a.earlyMedia(); r != reasonNone {
		return r
	}
	played, stop := c.a.startPrompt(name)
	defer stop()
	return c.await(played)
}

// dialB places leg B to the consignee: a fresh INVITE to the trunk with
// Request-URI = B and From/P-Asserted-Identity = X, so that the consignee
// never sees the caller (README "SIP behaviour in short").
func (c *call) dialB(t Target) (endReason, int) {
	target, ok := c.deps.routes.viaTrunk(t.Consignee)
	if !ok {
		c.log.Error("no outbound trunk configured")
		if r := c.play(media.PromptUnavailable); r != reasonNone {
			return r, sip.StatusServiceUnavailable
		}
		return reasonTrunkFailed, sip.StatusServiceUnavailable
	}
	return c.dial(t.Host, []legBTarget{target})
}

// callBack rings whoever last reached the consignee through the binding,
// or the merchant's registered softphones, showing X to them.
func (c *call) callBack(cb Callback) (endReason, int) {
	c.updateCDR(func(cdr *CDR) {
		cdr.BindingID, cdr.Order, cdr.Merchant, cdr.Extension = cb.BindingID, cb.Order, cb.Merchant, cb.Extension
	})
	if !cb.Calls.Allows(callrec.DirectionCallback) {
		// A one-way binding (to_consignee) takes no calls back.
		return c.refuseProtected(reasonRestricted, "the binding takes no calls from the consignee")
	}
	c.callbackRecorded(cb.Merchant)
	targets := c.callbackTargets(cb)
	c.log.Info("callback", "targets", len(targets), "to_account", cb.Account != "", "to_number", cb.Number != "")
	if len(targets) == 0 {
		if r := c.play(media.PromptUnavailable); r != reasonNone {
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
		if t, ok := c.deps.routes.toSoftphone(c.ctx, cb.Account); ok {
			targets = append(targets, t)
		}
	case cb.Number != "":
		// Checked again where it is dialled: whatever the store holds, only
		// a phone number goes into leg B's Request-URI and To.
		n, err := c.deps.directory.PhoneNumber(cb.Number)
		if err != nil {
			c.log.Warn("callback: last caller is not a phone number")
			break
		}
		if t, ok := c.deps.routes.viaTrunk(n); ok {
			targets = append(targets, t)
		}
	default:
		for _, user := range cb.Accounts {
			if t, ok := c.deps.routes.toSoftphone(c.ctx, user); ok {
				targets = append(targets, t)
			}
		}
	}
	return targets
}
