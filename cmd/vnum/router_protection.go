package main

import (
	"context"
	"fmt"
	"time"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/protection"
)

// What signalling will ask of consignee protection, ready for the call's
// flow to use: whether a call may ring the consignee now (counting it when
// it may), the block the consignee makes with their keys, and the
// merchant's clip for the notice. sip does not declare these yet; when it
// does, they are the router's methods below, unchanged.

// setPlatform puts the platform's protection p in force for new calls
// and for the admin API.
func (r *router) setPlatform(p protection.Platform) { r.platform.Store(&p) }

// platformNow is the platform's protection in force: what setPlatform
// last stored, or the configuration's defaults before it.
func (r *router) platformNow() protection.Platform {
	if p := r.platform.Load(); p != nil {
		return *p
	}
	p, err := config.Default().Protection.Platform()
	if err != nil {
		// The defaults validate; should they not, the notice stays off
		// and nothing is refused.
		return protection.Platform{Announce: protection.AnnounceOff, AfterClose: config.DefaultAfterClose}
	}
	return p
}

// TakeRing decides whether a call about to ring its consignee may do so
// now, under the platform's protection in force made stricter by the
// merchant's own, and counts it when it may (binding.Store.TakeRing). A
// call that is refused gets the verdict's disposition and prompt; an
// allowed one goes on under the decision's policy (its announce mode, the
// consignee's keys). A store that cannot answer in time is
// sip.ErrStoreSlow.
func (r *router) TakeRing(ctx context.Context, ring callrec.Ring) (protection.Decision, error) {
	platform, now := r.platformNow(), r.now()
	if d, ok := binding.DecidePlain(ring, platform, now); ok {
		// Nothing to read: not a store operation.
		return d, nil
	}
	start := time.Now()
	d, err := r.store.TakeRing(ctx, ring, platform, now)
	r.metrics.observe(opTakeRing, start, err)
	return d, shortage(err)
}

// BlockCaller blocks the caller of a call through binding id for its
// consignee, as the consignee asked with their keys: a merchant's account
// blocks its merchant, a PSTN caller its number. The consignee.blocked
// event is one of the events of call (its CDR id). A caller blocked
// already stays blocked; created reports a new block.
func (r *router) BlockCaller(ctx context.Context, id, call string, kind callrec.CallerKind, caller string) (created bool, err error) {
	start := time.Now()
	_, created, err = r.store.BlockFromConsignee(ctx, id, call, kind, caller, r.now())
	r.metrics.observe(opBlockCaller, start, err)
	return created, shortage(err)
}

// Announcement returns the 8 kHz samples of merchant's clip for the
// notice, or nil when it has none (the notice then says "a merchant").
func (r *router) Announcement(ctx context.Context, merchant string) ([]int16, error) {
	start := time.Now()
	clip, ok, err := r.store.Announcement(ctx, merchant)
	r.metrics.observe(opAnnouncement, start, err)
	if err != nil || !ok {
		return nil, shortage(err)
	}
	pcm, err := media.ClipSamples(uint16(clip.Encoding), clip.Data)
	if err != nil {
		// A clip the store holds was checked when it came in: one that
		// does not decode is a fault, not the caller's.
		return nil, fmt.Errorf("announcement of merchant %s: %w", merchant, err)
	}
	return pcm, nil
}

// RecordsCalls reports whether merchant asked for its calls to be
// recorded (its own protection's record), for a consignee's call back
// under recording.mode merchant.
func (r *router) RecordsCalls(ctx context.Context, merchant string) (bool, error) {
	own, err := r.store.MerchantProtection(ctx, merchant)
	if err != nil {
		return false, shortage(err)
	}
	return own.Record, nil
}
