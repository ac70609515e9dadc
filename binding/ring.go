package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/protection"
)

// takeRingQuery reads what consignee protection weighs for a call through
// a binding, in one statement: the binding's merchant, consignee and
// one-way setting, its merchant's own protection, and whether the caller
// is blocked for the consignee. Its arguments are the caller's kind
// (twice: a merchant's block names the binding's merchant) and key, then
// the binding.
const takeRingQuery = `SELECT b.merchant, b.consignee, b.calls, ` + ownCols + `,
	(SELECT COUNT(*) FROM blocks k WHERE k.consignee = b.consignee AND k.caller_kind = ?
		AND k.caller = CASE WHEN ? = 'merchant' THEN b.merchant ELSE ? END)
	FROM bindings b LEFT JOIN merchant_protection p ON p.merchant = b.merchant WHERE b.id = ?`

// ringCountQuery counts, for the caps, the calls of one caller that rang
// one consignee in a local day, and every call that rang through one
// binding.
const ringCountQuery = `SELECT
	(SELECT COUNT(*) FROM rings WHERE consignee = ? AND caller_kind = ? AND caller = ? AND at >= ? AND at < ?),
	(SELECT COUNT(*) FROM rings WHERE binding_id = ?)`

// DecidePlain decides a call through a plain binding (Ring.Plain: the
// merchant has no protection of its own, the consignee has blocked no
// one, the binding takes calls to them) under a platform policy that
// counts nothing, which needs nothing from the store: ok is false when
// the call is not such a call, and TakeRing must read and count.
func DecidePlain(r callrec.Ring, platform protection.Platform, now time.Time) (d protection.Decision, ok bool) {
	if !r.Plain {
		return protection.Decision{}, false
	}
	policy := protection.Effective(platform, protection.Own{})
	if policy.Counting() {
		return protection.Decision{}, false
	}
	return protection.Decide(policy, protection.Facts{Now: now}), true
}

// TakeRing decides, when vnum is about to send the consignee's INVITE for
// a call through binding r.BindingID, whether the call may ring them now,
// under platform made stricter by the merchant's own protection: one-way
// bindings, blocks, quiet hours, then the caps (see protection.Decide).
// An allowed call is counted as it is allowed, when a cap is in force: it
// counts whether or not it is answered.
//
// The caps never overshoot, on one node or several: the count and the
// call's row are read and written in one transaction that holds a lock
// on the consignee (an advisory lock on PostgreSQL; SQLite's write lock),
// so of calls racing for the last place exactly one gets it. With no cap
// in force nothing is written and no lock is taken: a cap switched on
// counts calls from then on.
//
// A plain call (DecidePlain) under a policy that counts nothing reads
// nothing: the directory found no protection of the merchant's own and no
// block of the consignee when it resolved the binding.
//
// The caller counts as the caps count it: an account as its merchant,
// all its accounts together; a PSTN number as itself. An unknown binding
// is ErrNotFound.
func (s *Store) TakeRing(ctx context.Context, r callrec.Ring, platform protection.Platform, now time.Time) (protection.Decision, error) {
	if d, ok := DecidePlain(r, platform, now); ok {
		return d, nil
	}
	var kind, caller string
	switch r.CallerKind {
	case callrec.CallerAccount:
		kind = callerMerchant
	case callrec.CallerNumber:
		kind, caller = callerNumber, r.Caller
	default:
		return protection.Decision{}, fmt.Errorf("%w caller kind %q: a call to a consignee comes from an account or a number",
			ErrInvalid, r.CallerKind)
	}
	var merchant, consignee, calls string
	var blocked int
	var row ownRow
	targets := append(append([]any{&merchant, &consignee, &calls}, row.targets()...), &blocked)
	err := s.db.QueryRowContext(ctx, takeRingQuery, kind, kind, caller, r.BindingID).Scan(targets...)
	if errors.Is(err, sql.ErrNoRows) {
		return protection.Decision{}, fmt.Errorf("binding %s: %w", r.BindingID, ErrNotFound)
	}
	if err != nil {
		return protection.Decision{}, fmt.Errorf("take ring: %w", err)
	}
	own, err := row.own()
	if err != nil {
		return protection.Decision{}, fmt.Errorf("take ring: protection of merchant %s: %w", merchant, err)
	}
	policy := protection.Effective(platform, own)
	facts := protection.Facts{Now: now, Blocked: blocked > 0,
		Restricted: !callrec.Calls(calls).Allows(callrec.DirectionToConsignee)}
	d := protection.Decide(policy, facts)
	if !d.Allowed() || !policy.Counting() {
		return d, nil
	}
	if kind == callerMerchant {
		caller = merchant
	}
	err = s.tx(ctx, func(tx *txn) error {
		if err := tx.dialect.lockConsignee(ctx, tx, consignee); err != nil {
			return err
		}
		from, to := policy.Day(now)
		if err := tx.QueryRowContext(ctx, ringCountQuery, consignee, kind, caller, from.UnixNano(), to.UnixNano(),
			r.BindingID).Scan(&facts.Today, &facts.Binding); err != nil {
			return err
		}
		if d = protection.Decide(policy, facts); !d.Allowed() {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO rings (binding_id, consignee, caller_kind, caller, cdr_id, at)
			VALUES (?, ?, ?, ?, ?, ?)`, r.BindingID, consignee, kind, caller, r.CDR, now.UnixNano())
		return err
	})
	if err != nil {
		return protection.Decision{}, fmt.Errorf("take ring: %w", err)
	}
	return d, nil
}
