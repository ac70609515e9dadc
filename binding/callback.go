package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vnum/vnum/callrec"
)

// ResolveCallback finds where a consignee's call back to X goes (README "SIP behaviour in short",
// callback). The binding is the active one on x whose consignee is caller,
// the most recently called one when there are several. The call goes to
// the caller of the latest answered call that reached the consignee
// through that binding, by the kind stored with its record: an account
// (Callback.Account) or a PSTN number (Callback.Number); when nobody has,
// to the merchant's accounts (Callback.Accounts). It returns ErrNoBinding
// when caller has no active binding on x.
func (s *Store) ResolveCallback(ctx context.Context, x, caller string, now time.Time) (callrec.Callback, error) {
	host, err := NormaliseHost(x)
	if err != nil {
		return callrec.Callback{}, ErrNoBinding
	}
	consignee, err := NormaliseConsignee(caller)
	if err != nil {
		return callrec.Callback{}, ErrNoBinding
	}
	t := now.UnixNano()
	b, err := scanBinding(s.db.QueryRowContext(ctx, `SELECT `+bindingCols+` FROM bindings b
		WHERE host = ? AND consignee = ? AND released_at IS NULL AND end_at > ? AND created_at <= ?
		ORDER BY (SELECT MAX(c.started_at) FROM cdrs c WHERE c.binding_id = b.id) DESC NULLS LAST, created_at DESC
		LIMIT 1`, host, consignee, t, t), now)
	if errors.Is(err, sql.ErrNoRows) {
		return callrec.Callback{}, ErrNoBinding
	}
	if err != nil {
		return callrec.Callback{}, fmt.Errorf("resolve callback: %w", err)
	}
	cb := callrec.Callback{Target: b.Target()}
	last, kind, err := s.lastCaller(ctx, b.ID)
	if err != nil {
		return callrec.Callback{}, fmt.Errorf("resolve callback: %w", err)
	}
	switch kind {
	case callrec.CallerAccount:
		cb.Account = last
		return cb, nil
	case callrec.CallerNumber:
		cb.Number = last
		return cb, nil
	}
	accounts, err := s.MerchantAccounts(ctx, b.Merchant)
	if err != nil {
		return callrec.Callback{}, fmt.Errorf("resolve callback: %w", err)
	}
	for _, a := range accounts {
		cb.Accounts = append(cb.Accounts, a.User)
	}
	return cb, nil
}

// lastCallers bounds how many answered calls lastCaller looks through.
const lastCallers = 20

// lastCaller is the caller, and its kind, of the latest answered call to
// the consignee of binding id whose caller is an account or a phone number
// by its stored kind, or CallerUnknown when there is none. A call back
// dials it, so a caller that does not have the shape of its kind (text
// written before callers were validated) is passed over rather than
// dialled. An account that was removed since is CallerUnknown, so that
// the call goes to the merchant's accounts: its name may even belong to
// another merchant by now, whose softphone must never ring for this
// consignee.
func (s *Store) lastCaller(ctx context.Context, id string) (string, callrec.CallerKind, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT caller, caller_kind,
			(SELECT COUNT(*) FROM accounts a WHERE a."user" = cdrs.caller AND a.merchant = cdrs.merchant)
		FROM cdrs
		WHERE binding_id = ? AND direction = ? AND answered_at IS NOT NULL AND caller <> ''
			AND caller_kind IN (?, ?)
		ORDER BY started_at DESC LIMIT ?`,
		id, callrec.DirectionToConsignee, callrec.CallerAccount, callrec.CallerNumber, lastCallers)
	if err != nil {
		return "", callrec.CallerUnknown, err
	}
	defer rows.Close()
	for rows.Next() {
		var caller string
		var kind callrec.CallerKind
		var live int
		if err := rows.Scan(&caller, &kind, &live); err != nil {
			return "", callrec.CallerUnknown, err
		}
		switch kind {
		case callrec.CallerAccount:
			if userRe.MatchString(caller) {
				if live == 0 {
					return "", callrec.CallerUnknown, nil
				}
				return caller, kind, nil
			}
		case callrec.CallerNumber:
			if n, err := NormaliseConsignee(caller); err == nil {
				return n, kind, nil
			}
		}
	}
	return "", callrec.CallerUnknown, rows.Err()
}

// MerchantAccounts returns the SIP logins of a merchant, by user name
// (byte order, the same on every database: PostgreSQL's ORDER BY follows
// the database's locale, where "bob" may come before "Carol").
func (s *Store) MerchantAccounts(ctx context.Context, merchant string) ([]callrec.Account, error) {
	out, err := s.merchantAccounts(ctx, merchant)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b callrec.Account) int { return strings.Compare(a.User, b.User) })
	return out, nil
}

func (s *Store) merchantAccounts(ctx context.Context, merchant string) ([]callrec.Account, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT "user", merchant, ha1_md5, ha1_sha256 FROM accounts
		WHERE merchant = ?`, merchant)
	if err != nil {
		return nil, fmt.Errorf("merchant accounts: %w", err)
	}
	defer rows.Close()
	var out []callrec.Account
	for rows.Next() {
		var a callrec.Account
		if err := rows.Scan(&a.User, &a.Merchant, &a.HA1MD5, &a.HA1SHA256); err != nil {
			return nil, fmt.Errorf("merchant accounts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
