package binding

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPoolStats: the pool's numbers, its active and quarantined bindings
// and its capacity follow creates, a release, an expiry and the end of a
// quarantine; a removed number counts no more.
func TestPoolStats(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		ctx := context.Background()
		seed(t, s, "17000000001", "17000000002", "17000000003")
		now := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

		p, err := s.PoolStats(ctx, now)
		require.NoError(t, err)
		require.Equal(t, PoolStats{Numbers: 3, Capacity: 3000}, p)

		var ids []string
		for _, order := range []string{"o1", "o2", "o3"} {
			b, err := s.CreateBinding(ctx, CreateRequest{Merchant: "m1", Order: order, Consignee: "13800138000",
				OrderStatus: "shipped", TTL: time.Hour}, now)
			require.NoError(t, err)
			ids = append(ids, b.ID)
		}
		_, err = s.Release(ctx, ids[0], now.Add(time.Minute))
		require.NoError(t, err)
		p, err = s.PoolStats(ctx, now.Add(2*time.Minute))
		require.NoError(t, err)
		require.Equal(t, PoolStats{Numbers: 3, Active: 2, Quarantined: 1, Capacity: 3000}, p)

		// An hour on, the others have expired; 90 days on, the quarantine
		// of all three has passed.
		p, err = s.PoolStats(ctx, now.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, PoolStats{Numbers: 3, Active: 0, Quarantined: 3, Capacity: 3000}, p)
		p, err = s.PoolStats(ctx, now.Add(time.Hour+2160*time.Hour))
		require.NoError(t, err)
		require.Equal(t, PoolStats{Numbers: 3, Capacity: 3000}, p)

		// A number added counts; removed, it no longer does.
		require.NoError(t, s.AddNumbers(ctx, "17000000004"))
		p, err = s.PoolStats(ctx, now.Add(2*time.Minute))
		require.NoError(t, err)
		require.Equal(t, PoolStats{Numbers: 4, Active: 2, Quarantined: 1, Capacity: 4000}, p)
		require.NoError(t, s.RemoveNumber(ctx, "17000000004"))
		p, err = s.PoolStats(ctx, now.Add(2*time.Minute))
		require.NoError(t, err)
		require.Equal(t, PoolStats{Numbers: 3, Active: 2, Quarantined: 1, Capacity: 3000}, p)
	})
}
