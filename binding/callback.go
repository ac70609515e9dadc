package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ResolveCallback finds the binding a consignee reaches by calling X back
// from the number bound to it (SPEC §4, callback): the active binding on x
// whose consignee is caller, the most recently called one when there are
// several. last is the caller of the latest answered call that reached the
// consignee through that binding (an account user or a PSTN number), or ""
// when nobody has, in which case the merchant's accounts should ring. It
// returns ErrNoBinding when caller has no active binding on x.
func (s *Store) ResolveCallback(ctx context.Context, x, caller string, now time.Time) (b *Binding, last string, err error) {
	host, err := NormaliseHost(x)
	if err != nil {
		return nil, "", ErrNoBinding
	}
	consignee, err := NormaliseConsignee(caller)
	if err != nil {
		return nil, "", ErrNoBinding
	}
	t := now.UnixNano()
	b, err = scanBinding(s.db.QueryRowContext(ctx, `SELECT `+bindingCols+` FROM bindings b
		WHERE host = ? AND consignee = ? AND released_at IS NULL AND end_at > ? AND created_at <= ?
		ORDER BY (SELECT MAX(c.started_at) FROM cdrs c WHERE c.binding_id = b.id) DESC, created_at DESC
		LIMIT 1`, host, consignee, t, t), now)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", ErrNoBinding
	}
	if err != nil {
		return nil, "", fmt.Errorf("resolve callback: %w", err)
	}
	last, err = s.lastCaller(ctx, b.ID)
	if err != nil {
		return nil, "", fmt.Errorf("resolve callback: %w", err)
	}
	return b, last, nil
}

// lastCallers bounds how many answered calls lastCaller looks through.
const lastCallers = 20

// lastCaller is the caller of the latest answered call to the consignee of
// binding id whose caller is an account user or a phone number. A call
// back dials it, so anything else a record may hold (an empty caller, or
// text written before callers were validated) is passed over rather than
// dialled.
func (s *Store) lastCaller(ctx context.Context, id string) (string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT caller FROM cdrs
		WHERE binding_id = ? AND direction = ? AND answered_at IS NOT NULL AND caller <> ''
		ORDER BY started_at DESC LIMIT ?`, id, DirectionToConsignee, lastCallers)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	for rows.Next() {
		var caller string
		if err := rows.Scan(&caller); err != nil {
			return "", err
		}
		if _, err := NormaliseConsignee(caller); err == nil || userRe.MatchString(caller) {
			return caller, nil
		}
	}
	return "", rows.Err()
}

// MerchantAccounts returns the SIP logins of a merchant, by user name.
func (s *Store) MerchantAccounts(ctx context.Context, merchant string) ([]Account, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT user, merchant, ha1_md5, ha1_sha256 FROM accounts
		WHERE merchant = ? ORDER BY user`, merchant)
	if err != nil {
		return nil, fmt.Errorf("merchant accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		var a Account
		if err := rows.Scan(&a.User, &a.Merchant, &a.HA1MD5, &a.HA1SHA256); err != nil {
			return nil, fmt.Errorf("merchant accounts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
