package binding

import (
	"context"
	"fmt"
	"time"
)

// PoolStats is how full the host-number pool is, for /metrics: an
// operator adds numbers before creates start failing with
// ErrPoolExhausted.
type PoolStats struct {
	// Numbers is the host numbers in the pool (removed ones aside).
	Numbers int
	// Active is the bindings on them that calls reach now.
	Active int
	// Quarantined is the bindings on them that ended within
	// binding.quarantine: their (X, E) is not given out yet.
	Quarantined int
	// Capacity is how many extensions the pool holds at the policy's
	// extension length: a full pool has Active+Quarantined == Capacity.
	Capacity int
}

// poolStatsQuery counts the bindings that hold an extension, through the
// pool's numbers, so that the database walks the index on (host,
// retired) rather than every binding ever made.
const poolStatsQuery = `SELECT
	COALESCE(SUM(CASE WHEN b.end_at > ? THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN b.end_at <= ? AND b.end_at > ? THEN 1 ELSE 0 END), 0)
	FROM numbers n JOIN bindings b ON b.host = n.host AND b.retired = 0
	WHERE n.removed_at IS NULL`

// PoolStats returns how full the pool is at now.
func (s *Store) PoolStats(ctx context.Context, now time.Time) (PoolStats, error) {
	var p PoolStats
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM numbers WHERE removed_at IS NULL`).Scan(&p.Numbers); err != nil {
		return PoolStats{}, fmt.Errorf("pool stats: %w", err)
	}
	at := now.UnixNano()
	cutoff := now.Add(-s.policy.Quarantine).UnixNano()
	if err := s.db.QueryRowContext(ctx, poolStatsQuery, at, at, cutoff).Scan(&p.Active, &p.Quarantined); err != nil {
		return PoolStats{}, fmt.Errorf("pool stats: %w", err)
	}
	p.Capacity = p.Numbers * pow10(s.policy.ExtensionDigits-1)
	return p, nil
}
