package sip

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/callrec"
)

// newCDR is the record a call attempt starts with.
func newCDR(id string, req *sip.Request, who caller, d Dialled, cb *Callback) CDR {
	name, kind, direction := who.account.User, callrec.CallerAccount, callrec.DirectionToConsignee
	if who.trunk {
		name, kind = who.number, callrec.CallerNumber
	}
	if cb != nil {
		// The consignee's number never goes into a record merchants read.
		name, kind, direction = "consignee", callrec.CallerConsignee, callrec.DirectionCallback
	}
	return CDR{
		ID:         id,
		CallID:     req.CallID().Value(),
		Merchant:   who.account.Merchant,
		Host:       d.Host,
		Direction:  direction,
		Caller:     name,
		CallerKind: kind,
		StartedAt:  time.Now().UTC(),
	}
}

// updateCDR changes the call's record and writes it, so that a crash leaves
// the progress that matters for billing (binding, answer) in the store,
// with the dialogs of the legs answered so far (keepLegs): the same write
// carries both, no store round trip is added for the legs.
func (c *call) updateCDR(f func(*CDR)) {
	f(&c.cdr)
	c.publish()
	c.keepLegs()
	cdr, legs := c.cdr, c.legs
	ctx, cancel := c.deps.opts.storeTimeout.ctx(context.WithoutCancel(c.ctx))
	defer cancel()
	if err := c.deps.recorder.UpdateCall(ctx, &cdr, legs); err != nil {
		c.log.Error("updating CDR", "error", err)
	}
}

// keepLegs notes the dialogs of the legs answered since the call's last
// write, for updateCDR to write with the record. A dialog that cannot be
// kept (a message without a header the dialog needs) is only logged: the
// call goes on.
func (c *call) keepLegs() {
	if c.legs.A == "" && c.a.answered {
		text, err := legADialog(c.a.invite)
		if err != nil {
			c.log.Warn("leg A's dialog not kept: a crash would leave it up", "error", err)
		}
		c.legs.A = text
	}
	if b := c.b.winner; c.legs.B == "" && b != nil && b.answer() != nil && b.answer().IsSuccess() {
		text, err := legBDialog(b.request(), b.answer())
		if err != nil {
			c.log.Warn("leg B's dialog not kept: a crash would leave it up", "error", err)
		}
		c.legs.B = text
	}
}

// DefaultCDRRefresh is how often an answered call's CDR row is refreshed
// when Options.CDRRefresh is zero: at least every 10 s, so that a crash
// loses at most that much talk time.
const DefaultCDRRefresh = 10 * time.Second

// refreshCDR writes the answered call's talk time so far, in the
// background so that a slow store never holds up the call's own loop
// (hang-ups, media timeout). A refresh still being written when the next
// is due makes that one skip; the call's end cancels one in flight, and the
// store ignores a refresh that lands after the end. The writer gets a copy
// of the record and touches nothing of the call.
func (c *call) refreshCDR() {
	if c.refreshing != nil {
		select {
		case <-c.refreshing:
			c.refreshing = nil
		default:
			return
		}
	}
	if c.cdr.AnsweredAt.IsZero() {
		return
	}
	cdr, alive, written := c.cdr, time.Now().UTC(), make(chan struct{})
	c.refreshing = written
	ctx, cancel := c.deps.opts.storeTimeout.ctx(c.ctx)
	router, log, callCtx := c.deps.recorder, c.log, c.ctx
	go func() {
		defer close(written)
		defer cancel()
		if err := router.RefreshCall(ctx, &cdr, alive); err != nil && callCtx.Err() == nil {
			log.Warn("refreshing CDR", "error", err)
		}
	}()
}

// cdrFinishAttempts is how often the call's own goroutine tries to
// finish its CDR, each write bounded by store.timeout, before it leaves the
// record to the server's backlog (cdrBacklog), which goes on trying until
// the store answers: a lost end would leave the call unbilled.
const cdrFinishAttempts = 3

// finishCDR completes the call's record in the store, retrying a failed
// write; a record the store still refuses goes to the backlog, so that
// the call (its goroutine, its registry entry) does not wait for the store.
func (c *call) finishCDR(cdr *CDR) {
	for attempt := 1; ; attempt++ {
		ctx, cancel := c.deps.opts.storeTimeout.ctx(context.WithoutCancel(c.ctx))
		err := c.deps.recorder.EndCall(ctx, cdr)
		cancel()
		if err == nil {
			return
		}
		if attempt >= cdrFinishAttempts {
			c.log.Error("finishing CDR; it waits in the backlog until the store answers", "error", err, "attempts", attempt)
			c.deps.backlog.add(*cdr)
			return
		}
		c.log.Warn("finishing CDR, retrying", "error", err, "attempt", attempt)
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
}
