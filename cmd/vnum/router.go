package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/protection"
	"github.com/vnum/vnum/sip"
)

// router adapts the binding store to what signalling needs (sip.Router).
// The packages do not know each other; this is the only place they meet.
// Both speak callrec, so what is left here is the store's clock and rates
// and the turning of the store's errors into the ones sip acts on.
type router struct {
	store *binding.Store
	rates binding.Rates
	now   func() time.Time
	// platform is the platform's consignee protection in force, swapped
	// whole when a reload changes protection.* (router_protection.go).
	platform atomic.Pointer[protection.Platform]
	// metrics times each store call (nil: not timed).
	metrics *storeMetrics
}

var _ sip.Router = (*router)(nil)

func (r *router) Account(ctx context.Context, user string) (callrec.Account, error) {
	start := time.Now()
	a, err := r.store.Account(ctx, user)
	r.metrics.observe(opAccount, start, err)
	if errors.Is(err, binding.ErrNotFound) {
		return callrec.Account{}, sip.ErrUnknownAccount
	}
	return a, shortage(err)
}

func (r *router) IsHostNumber(ctx context.Context, x string) (bool, error) {
	start := time.Now()
	ok, err := r.store.IsHostNumber(ctx, x)
	r.metrics.observe(opIsHostNumber, start, err)
	return ok, shortage(err)
}

func (r *router) Resolve(ctx context.Context, x, ext, merchant string) (callrec.Target, error) {
	start := time.Now()
	b, err := r.store.Resolve(ctx, x, ext, merchant, r.now())
	r.metrics.observe(opResolve, start, err)
	switch {
	case errors.Is(err, binding.ErrNoBinding):
		return callrec.Target{}, sip.ErrInvalidExtension
	case errors.Is(err, binding.ErrExpired):
		return callrec.Target{}, sip.ErrExpired
	case err != nil:
		return callrec.Target{}, shortage(err)
	}
	return b.Target(), nil
}

func (r *router) Callback(ctx context.Context, x, caller string) (callrec.Callback, error) {
	start := time.Now()
	cb, err := r.store.ResolveCallback(ctx, x, caller, r.now())
	r.metrics.observe(opCallback, start, err)
	if errors.Is(err, binding.ErrNoBinding) {
		return callrec.Callback{}, sip.ErrInvalidExtension
	}
	return cb, shortage(err)
}

func (r *router) PhoneNumber(raw string) (string, error) { return binding.NormaliseConsignee(raw) }

// StartCall and EndCall hand the store a copy of the record: the store
// fills in and rates what it is given, while sip's record belongs to the
// call and is changed by the call's own goroutine only.

func (r *router) StartCall(ctx context.Context, c *callrec.Record) error {
	rec := *c
	start := time.Now()
	err := r.store.StartCDR(ctx, &rec)
	r.metrics.observe(opStartCall, start, err)
	return shortage(err)
}

func (r *router) UpdateCall(ctx context.Context, c *callrec.Record, legs callrec.Legs) error {
	start := time.Now()
	err := r.store.UpdateCDR(ctx, c, legs)
	r.metrics.observe(opUpdateCall, start, err)
	return shortage(err)
}

func (r *router) RefreshCall(ctx context.Context, c *callrec.Record, alive time.Time) error {
	start := time.Now()
	err := r.store.RefreshCDR(ctx, c, alive, r.rates)
	r.metrics.observe(opRefreshCall, start, err)
	return shortage(err)
}

func (r *router) EndCall(ctx context.Context, c *callrec.Record) error {
	rec := *c
	start := time.Now()
	err := r.store.FinishCDR(ctx, &rec, r.rates)
	r.metrics.observe(opEndCall, start, err)
	if errors.Is(err, binding.ErrCDRFinished) {
		// A retry after a write that did land.
		return nil
	}
	return shortage(err)
}

func (r *router) SaveRegistration(ctx context.Context, reg callrec.Registration) error {
	start := time.Now()
	err := r.store.SaveRegistration(ctx, reg)
	r.metrics.observe(opSaveRegistration, start, err)
	return shortage(err)
}

func (r *router) DeleteRegistration(ctx context.Context, user string) error {
	start := time.Now()
	err := r.store.DeleteRegistration(ctx, user)
	r.metrics.observe(opDeleteRegistration, start, err)
	return shortage(err)
}

func (r *router) LookupRegistration(ctx context.Context, user string, now time.Time) (callrec.Registration, bool, error) {
	start := time.Now()
	reg, ok, err := r.store.LookupRegistration(ctx, user, now)
	r.metrics.observe(opLookupRegistration, start, err)
	return reg, ok, shortage(err)
}

// shortage marks a store error that means the store cannot answer now
// (binding.Unavailable: a deadline, a lost or refused connection, a lock
// not had in time) as sip.ErrStoreSlow, which signalling answers with 503
// and Retry-After and counts as store_slow (README "SIP behaviour in short"); other store errors
// stay faults (500, logged).
func shortage(err error) error {
	if err != nil && binding.Unavailable(err) && !errors.Is(err, sip.ErrStoreSlow) {
		return fmt.Errorf("%w: %w", sip.ErrStoreSlow, err)
	}
	return err
}
