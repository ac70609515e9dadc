package main

import (
	"context"
	"errors"
	"time"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
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
}

var _ sip.Router = (*router)(nil)

func (r *router) Account(ctx context.Context, user string) (callrec.Account, error) {
	a, err := r.store.Account(ctx, user)
	if errors.Is(err, binding.ErrNotFound) {
		return callrec.Account{}, sip.ErrUnknownAccount
	}
	return a, err
}

func (r *router) IsHostNumber(ctx context.Context, x string) (bool, error) {
	return r.store.IsHostNumber(ctx, x)
}

func (r *router) Resolve(ctx context.Context, x, ext, merchant string) (callrec.Target, error) {
	b, err := r.store.Resolve(ctx, x, ext, merchant, r.now())
	switch {
	case errors.Is(err, binding.ErrNoBinding):
		return callrec.Target{}, sip.ErrInvalidExtension
	case errors.Is(err, binding.ErrExpired):
		return callrec.Target{}, sip.ErrExpired
	case err != nil:
		return callrec.Target{}, err
	}
	return b.Target(), nil
}

func (r *router) Callback(ctx context.Context, x, caller string) (callrec.Callback, error) {
	cb, err := r.store.ResolveCallback(ctx, x, caller, r.now())
	if errors.Is(err, binding.ErrNoBinding) {
		return callrec.Callback{}, sip.ErrInvalidExtension
	}
	return cb, err
}

func (r *router) PhoneNumber(raw string) (string, error) { return binding.NormaliseConsignee(raw) }

// StartCall and EndCall hand the store a copy of the record: the store
// fills in and rates what it is given, while sip's record belongs to the
// call and is changed by the call's own goroutine only.

func (r *router) StartCall(ctx context.Context, c *callrec.Record) error {
	rec := *c
	return r.store.StartCDR(ctx, &rec)
}

func (r *router) UpdateCall(ctx context.Context, c *callrec.Record) error {
	return r.store.UpdateCDR(ctx, c)
}

func (r *router) RefreshCall(ctx context.Context, c *callrec.Record, alive time.Time) error {
	return r.store.RefreshCDR(ctx, c, alive, r.rates)
}

func (r *router) EndCall(ctx context.Context, c *callrec.Record) error {
	rec := *c
	err := r.store.FinishCDR(ctx, &rec, r.rates)
	if errors.Is(err, binding.ErrCDRFinished) {
		// A retry after a write that did land.
		return nil
	}
	return err
}

func (r *router) SaveRegistration(ctx context.Context, reg callrec.Registration) error {
	return r.store.SaveRegistration(ctx, reg)
}

func (r *router) DeleteRegistration(ctx context.Context, user string) error {
	return r.store.DeleteRegistration(ctx, user)
}

func (r *router) LookupRegistration(ctx context.Context, user string, now time.Time) (callrec.Registration, bool, error) {
	return r.store.LookupRegistration(ctx, user, now)
}
