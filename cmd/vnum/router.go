package main

import (
	"context"
	"errors"
	"time"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/sip"
)

// router adapts the binding store to what signalling needs (sip.Router).
// The packages do not know each other; this is the only place they meet.
type router struct {
	store *binding.Store
	rates binding.Rates
	now   func() time.Time
}

var _ sip.Router = (*router)(nil)

func (r *router) Account(ctx context.Context, user string) (sip.Account, error) {
	a, err := r.store.Account(ctx, user)
	if errors.Is(err, binding.ErrNotFound) {
		return sip.Account{}, sip.ErrUnknownAccount
	}
	if err != nil {
		return sip.Account{}, err
	}
	return sip.Account{User: a.User, Merchant: a.Merchant, HA1MD5: a.HA1MD5, HA1SHA256: a.HA1SHA256}, nil
}

func (r *router) IsHostNumber(ctx context.Context, x string) (bool, error) {
	return r.store.IsHostNumber(ctx, x)
}

func (r *router) Resolve(ctx context.Context, x, ext, merchant string) (sip.Target, error) {
	b, err := r.store.Resolve(ctx, x, ext, merchant, r.now())
	switch {
	case errors.Is(err, binding.ErrNoBinding):
		return sip.Target{}, sip.ErrInvalidExtension
	case errors.Is(err, binding.ErrExpired):
		return sip.Target{}, sip.ErrExpired
	case err != nil:
		return sip.Target{}, err
	}
	return sip.Target{BindingID: b.ID, Merchant: b.Merchant, Order: b.Order, Host: b.Host, Extension: b.Extension, Consignee: b.Consignee}, nil
}

func (r *router) Callback(ctx context.Context, x, caller string) (sip.Callback, error) {
	b, last, err := r.store.ResolveCallback(ctx, x, caller, r.now())
	switch {
	case errors.Is(err, binding.ErrNoBinding):
		return sip.Callback{}, sip.ErrInvalidExtension
	case err != nil:
		return sip.Callback{}, err
	}
	cb := sip.Callback{Target: sip.Target{BindingID: b.ID, Merchant: b.Merchant, Order: b.Order, Host: b.Host,
		Extension: b.Extension, Consignee: b.Consignee}}
	if last != "" {
		// The last party is an account of the merchant or a PSTN number.
		_, aerr := r.store.Account(ctx, last)
		switch {
		case aerr == nil:
			cb.Account = last
		case errors.Is(aerr, binding.ErrNotFound):
			cb.Number = last
		default:
			return sip.Callback{}, aerr
		}
		return cb, nil
	}
	accounts, err := r.store.MerchantAccounts(ctx, b.Merchant)
	if err != nil {
		return sip.Callback{}, err
	}
	for _, a := range accounts {
		cb.Accounts = append(cb.Accounts, a.User)
	}
	return cb, nil
}

func (r *router) PhoneNumber(raw string) (string, error) { return binding.NormaliseConsignee(raw) }

func (r *router) StartCall(ctx context.Context, c *sip.CDR) error {
	return r.store.StartCDR(ctx, toStore(c))
}

func (r *router) UpdateCall(ctx context.Context, c *sip.CDR) error {
	return r.store.UpdateCDR(ctx, toStore(c))
}

func (r *router) RefreshCall(ctx context.Context, c *sip.CDR, alive time.Time) error {
	return r.store.RefreshCDR(ctx, toStore(c), alive, r.rates)
}

func (r *router) EndCall(ctx context.Context, c *sip.CDR) error {
	err := r.store.FinishCDR(ctx, toStore(c), r.rates)
	if errors.Is(err, binding.ErrCDRFinished) {
		// A retry after a write that did land.
		return nil
	}
	return err
}

func toStore(c *sip.CDR) *binding.CDR {
	return &binding.CDR{
		ID:          c.ID,
		CallID:      c.CallID,
		Merchant:    c.Merchant,
		BindingID:   c.BindingID,
		Order:       c.Order,
		Host:        c.Host,
		Extension:   c.Extension,
		Direction:   c.Direction,
		Caller:      c.Caller,
		StartedAt:   c.StartedAt,
		RingingAt:   c.RingingAt,
		AnsweredAt:  c.AnsweredAt,
		EndedAt:     c.EndedAt,
		Disposition: c.Disposition,
		HangupBy:    c.HangupBy,
		SIPStatus:   c.SIPStatus,
	}
}
