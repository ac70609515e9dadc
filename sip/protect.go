package sip

import (
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/protection"
	"github.com/vnum/vnum/sip/frontdoor"
)

// Consignee protection in the call's script: before leg B's INVITE the
// call asks whether it may ring B now (protect); once B answers, with an
// announce mode, B hears the notice while the caller hears ringback, and
// with confirm B's key decides (announce); while bridged, B's block key
// ends the call and blocks the caller (calleeKeyed). The rules are the
// protection package's and the counts the store's: the call only asks,
// and acts on the answer.

// Keys the consignee answers a confirm notice with.
const (
	keyTake    = '1'
	keyDecline = '2'
	keyBlock   = '9'
)

// protectorOf is r's consignee protection, or nil when r has none.
func protectorOf(r Router) Protector {
	if p, ok := r.(Protector); ok {
		return p
	}
	return nil
}

// protect asks consignee protection whether the call may ring B now,
// counting it when it may. A refused call hears why (quiet hours, the
// cap, or that the consignee cannot take it) and ends before B rings. An
// allowed call goes on under the decision's policy: its announce mode
// and the consignee's keys.
func (c *call) protect(t Target) (endReason, int) {
	if !t.Calls.Allows(callrec.DirectionToConsignee) {
		return c.refuseProtected(reasonRestricted, "the binding takes no calls to the consignee")
	}
	p := c.deps.protector
	if p == nil {
		return reasonNone, 0
	}
	ctx, cancel := c.deps.opts.storeTimeout.ctx(c.ctx)
	d, err := p.TakeRing(ctx, callrec.Ring{BindingID: t.BindingID, CallerKind: c.cdr.CallerKind,
		Caller: c.cdr.Caller, CDR: c.cdr.ID, Plain: t.Plain})
	cancel()
	switch {
	case err == nil:
	case frontdoor.StoreShort(err):
		c.log.Warn("consignee protection: store too slow or unavailable", "error", err)
		return reasonStoreSlow, 0
	default:
		c.log.Error("consignee protection", "error", err)
		return reasonInternal, 0
	}
	c.policy = d.Policy
	switch d.Verdict {
	case protection.Allow:
		return reasonNone, 0
	case protection.QuietHours:
		return c.refuseProtected(reasonQuietHours, d.Reason)
	case protection.Capped:
		return c.refuseProtected(reasonCapped, d.Reason)
	case protection.Blocked:
		return c.refuseProtected(reasonBlocked, d.Reason)
	case protection.Restricted:
		return c.refuseProtected(reasonRestricted, d.Reason)
	}
	c.log.Error("consignee protection: unknown verdict", "verdict", d.Verdict.String())
	return reasonInternal, 0
}

// refuseProtected ends a call that consignee protection refused or the
// consignee declined: one log line with the reason (never B), the
// count, and the prompt the caller hears before the final status (or
// the BYE of a caller already answered). Declined and blocked calls
// sound the same.
func (c *call) refuseProtected(r endReason, why string) (endReason, int) {
	disposition := r.ending().disposition
	c.deps.protected.add(string(disposition))
	c.log.Info("call refused by consignee protection", "reason", string(disposition), "why", why,
		"binding", c.cdr.BindingID)
	prompt := media.PromptNotAvailable
	switch r {
	case reasonQuietHours:
		prompt = media.PromptQuietHours
	case reasonCapped:
		prompt = media.PromptCapped
	}
	code, _ := statusForReason(r)
	if ended := c.play(prompt); ended != reasonNone {
		return ended, code
	}
	return r, code
}

// announcing reports whether B hears consignee protection's notice
// before the bridge.
func (c *call) announcing() bool { return c.policy.Announce >= protection.AnnounceInform }

// noticed reports whether the call's parties hear a notice before the
// bridge: B consignee protection's, and both sides that the call is
// recorded.
func (c *call) noticed() bool { return c.announcing() || c.recorded }

// announce plays the notice to B, who has answered; with confirm it
// waits for B's key: 1 takes the call, 2 or no key within confirm_timeout
// declines it, 9 blocks the caller and declines it. A recorded call's
// caller hears that it is recorded: at once when B hears only that, but
// after B's notice (inform) or B's 1 (confirm) when B hears who calls,
// ringback until then, so that a decline or a block sounds to the caller
// as a call nobody took, never as one B answered. It returns reasonNone
// when the call is to be bridged: both sides have heard what they are
// told.
func (c *call) announce() (endReason, int) {
	c.setState(StateNotice)
	// B's early media stops: the caller hears vnum, not B, until the
	// bridge.
	c.b.stream.StopRelay()
	var told <-chan struct{}
	stopTelling := func() {}
	if c.announcing() {
		c.a.ring()
	} else {
		told, stopTelling = c.tellCaller()
	}
	defer func() { stopTelling() }()
	defer c.a.stopRingback()
	confirm := c.policy.Announce == protection.AnnounceConfirm
	played, stop := c.b.startNotice(c.notice(confirm))
	defer stop()
	c.bKeys = c.bKeys[:0]
	var timeout <-chan time.Time
	for {
		select {
		case <-told:
			told = nil
			c.a.ring()
			if played == nil && !confirm {
				return reasonNone, 0
			}
			continue
		case <-played:
			played = nil
			if !confirm {
				if c.announcing() {
					return c.tellAfterNotice()
				}
				if told == nil {
					return reasonNone, 0
				}
				continue
			}
			t := time.NewTimer(c.policy.ConfirmTimeout)
			defer t.Stop()
			timeout = t.C
			continue
		case <-timeout:
			c.log.Info("consignee did not answer the notice")
			return c.refuseProtected(reasonDeclined, "no key within confirm_timeout")
		case k := <-c.b.stream.Digits():
			c.bKeys = append(c.bKeys, k)
		case ev := <-c.h.events:
			if r := c.handle(ev); r != reasonNone {
				if r == reasonCalleeHangup {
					// B hung up on the notice: they declined.
					return c.refuseProtected(reasonDeclined, "the consignee hung up during the notice")
				}
				return r, sip.StatusRequestTerminated
			}
		}
		if !confirm {
			c.bKeys = c.bKeys[:0]
			continue
		}
		for _, k := range c.bKeys {
			switch k {
			case keyTake:
				stop()
				c.log.Info("consignee took the call")
				return c.tellAfterNotice()
			case keyDecline:
				return c.refuseProtected(reasonDeclined, "the consignee declined (2)")
			case keyBlock:
				c.blockCaller()
				return c.refuseProtected(reasonDeclined, "the consignee declined and blocked the caller (9)")
			}
		}
		c.bKeys = c.bKeys[:0]
	}
}

// tellAfterNotice has the caller of a recorded call hear that it is
// recorded once B has heard the notice and takes the call, and returns
// reasonNone when it has (at once for a call not recorded).
func (c *call) tellAfterNotice() (endReason, int) {
	told, stop := c.tellCaller()
	defer stop()
	if told == nil {
		return reasonNone, 0
	}
	if r := c.await(told); r != reasonNone {
		return r, sip.StatusRequestTerminated
	}
	return reasonNone, 0
}

// tellCaller has the caller of a recorded call hear that it is recorded,
// before the bridge: as early media (183) when it is not answered yet.
// told is closed when it has heard it, and stop cuts it short. The
// caller of a call that is not recorded is told nothing and hears
// ringing at once (told nil).
func (c *call) tellCaller() (told <-chan struct{}, stop func()) {
	if !c.recorded {
		c.a.ring()
		return nil, func() {}
	}
	if r := c.a.earlyMedia(); r != reasonNone {
		// The caller is gone: its event ends the call.
		return nil, func() {}
	}
	c.a.stopRingback()
	return c.a.startPrompt(media.PromptRecorded)
}

// notice is what B hears before the bridge: with an announce mode, who
// calls (the merchant's clip, "a merchant" or "a courier"), the order's
// last four digits, that the call is recorded when it is, and with
// confirm the keys; without one, only that the call is recorded. It
// names no caller's account or number. A notice that cannot be built is
// logged and B hears nothing of it.
func (c *call) notice(confirm bool) []int16 {
	if !c.announcing() {
		pcm, err := media.Prompt(c.deps.opts.language, media.PromptRecorded)
		if err != nil {
			c.log.Error("notice", "error", err)
		}
		return pcm
	}
	n := media.Notice{Courier: c.cdr.CallerKind == callrec.CallerNumber,
		OrderDigits: protection.OrderDigits(c.cdr.Order), Confirm: confirm, Recorded: c.recorded}
	if !n.Courier && c.deps.protector != nil {
		ctx, cancel := c.deps.opts.storeTimeout.ctx(c.ctx)
		clip, err := c.deps.protector.Announcement(ctx, c.cdr.Merchant)
		cancel()
		if err != nil {
			// The notice says "a merchant" instead.
			c.log.Warn("merchant's clip", "error", err)
		}
		n.Clip = clip
	}
	pcm, err := n.Samples(c.deps.opts.language)
	if err != nil {
		c.log.Error("notice", "error", err)
		return nil
	}
	return pcm
}

// watchBlockKey has the bridged call watch B's keys for block_key, when
// consignee protection gives one (never on a callback: B is then the
// merchant's own phone or a courier).
func (c *call) watchBlockKey() bool {
	if c.deps.protector == nil || c.callback != nil || c.policy.BlockKey == "" || c.cdr.Direction != callrec.DirectionToConsignee {
		return false
	}
	c.bKeys = c.bKeys[:0]
	c.b.stream.WatchKeys(true)
	return true
}

// calleeKeyed takes a key of B's during the bridged call: when B's last
// keys make block_key, the caller is blocked and the call ends.
func (c *call) calleeKeyed(k rune) endReason {
	key := c.policy.BlockKey
	if c.state != StateBridged || key == "" || c.callback != nil {
		return reasonNone
	}
	c.bKeys = append(c.bKeys, k)
	if n := len(c.bKeys) - len(key); n > 0 {
		c.bKeys = c.bKeys[n:]
	}
	if !strings.HasSuffix(string(c.bKeys), key) {
		return reasonNone
	}
	c.log.Info("consignee keyed the block key: call ended")
	c.blockCaller()
	return reasonBlockKey
}

// blockCaller blocks the call's caller for its consignee, as B asked. A
// block the store could not take is logged; the call ends all the same.
func (c *call) blockCaller() {
	p := c.deps.protector
	if p == nil {
		return
	}
	ctx, cancel := c.deps.opts.storeTimeout.ctx(c.ctx)
	created, err := p.BlockCaller(ctx, c.cdr.BindingID, c.cdr.ID, c.cdr.CallerKind, c.cdr.Caller)
	cancel()
	if err != nil {
		c.log.Error("blocking the caller for the consignee", "error", err)
		return
	}
	c.log.Info("caller blocked by the consignee", "binding", c.cdr.BindingID, "new", created)
}

// protectedCounts counts the calls consignee protection refused or the
// consignee declined, by reason (vnum_calls_protected_total{reason}).
type protectedCounts struct {
	mu     sync.Mutex
	counts map[string]int64
}

// protectedReasons are the reasons of vnum_calls_protected_total.
var protectedReasons = []callrec.Disposition{callrec.DispositionQuietHours, callrec.DispositionCapped,
	callrec.DispositionBlocked, callrec.DispositionDeclined, callrec.DispositionRestricted}

func (p *protectedCounts) add(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.counts == nil {
		p.counts = make(map[string]int64)
	}
	p.counts[reason]++
}

// byReason returns the counts by reason, every reason present.
func (p *protectedCounts) byReason() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(protectedReasons))
	for _, r := range protectedReasons {
		out[string(r)] = p.counts[string(r)]
	}
	return out
}
