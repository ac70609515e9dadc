package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/vnum/vnum/callrec"
)

// RemoveNumber takes host number x (+86 or 86 prefix allowed) out of the
// pool, unless it still carries a binding that is active or in quarantine:
// a caller who dials it must still reach the consignee, or hear that the
// number expired, until the quarantine is over. Then it returns ErrInUse,
// saying how many bindings hold it and from when it is free. An unknown
// number, or one already removed, is ErrNotFound.
//
// The number's row stays, marked removed: the bindings it carried, which
// bills count, refer to it. It runs under the allocation lock, so no
// create on any node can pick x between the check and the removal.
func (s *Store) RemoveNumber(ctx context.Context, x string) error {
	host, err := NormaliseHost(x)
	if err != nil {
		return err
	}
	now := s.Now()
	err = s.allocTx(ctx, func(tx *txn) error {
		var removed sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT removed_at FROM numbers WHERE host = ?`, host).Scan(&removed)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && removed.Valid) {
			return fmt.Errorf("number %s: %w", host, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := s.checkUnused(ctx, tx, host, now.UnixNano()); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE numbers SET removed_at = ? WHERE host = ?`, now.UnixNano(), host)
		return err
	})
	if err != nil && !isSentinel(err) {
		return fmt.Errorf("remove number %s: %w", host, err)
	}
	return err
}

// checkUnused returns ErrInUse when host carries a binding active at now
// or ended within the quarantine. Retirement is lazy, so the quarantine is
// judged by end_at, not by the retired flag alone.
func (s *Store) checkUnused(ctx context.Context, tx *txn, host string, now int64) error {
	cutoff := now - s.policy.Quarantine.Nanoseconds()
	var active, held int
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(CASE WHEN end_at > ? THEN 1 END), COUNT(*), MAX(end_at)
		FROM bindings WHERE host = ? AND retired = 0 AND end_at > ?`, now, host, cutoff).
		Scan(&active, &held, &last); err != nil {
		return err
	}
	if held == 0 {
		return nil
	}
	free := callrec.FormatTime(fromNS(last).Add(s.policy.Quarantine))
	if active == 0 {
		return fmt.Errorf("number %s: %w: %d ended binding(s) in quarantine until %s (binding.quarantine)",
			host, ErrInUse, held, free)
	}
	return fmt.Errorf("number %s: %w: %d active binding(s) and %d in quarantine; as they stand it is free from %s "+
		"(the last binding's end plus binding.quarantine)", host, ErrInUse, active, held-active, free)
}

// checkNotHost refuses a consignee that is one of vnum's own host numbers,
// in whatever form the pool holds it: a binding would hide a number behind
// itself, and a call to it would come back into vnum. Only +86 numbers
// can be host numbers, which are national.
func checkNotHost(ctx context.Context, tx *txn, consignee string) error {
	national, ok := strings.CutPrefix(consignee, "+86")
	if !ok {
		return nil
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM numbers WHERE host IN (?, ?) AND removed_at IS NULL`,
		national, "0"+national).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w consignee: it is one of vnum's own host numbers; bind the consignee's own phone", ErrInvalid)
	}
	return nil
}
