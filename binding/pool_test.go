package binding

import (
	"context"
	"io/fs"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRemoveNumber: a host number leaves the pool only once no binding on
// it is active or in quarantine, and the refusal says how many hold it and
// until when. A removed number is neither allocated, nor a host number to
// signalling, nor listed, and comes back when added again.
func TestRemoveNumber(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		c := newClock(t0)
		s, _ := be.open(t, c.option(), WithPolicy(Policy{TTL: 24 * time.Hour, Quarantine: 48 * time.Hour, ExtensionDigits: 4}))
		seed(t, s, "17000000001")
		ctx := context.Background()
		b1, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		_, err = s.CreateBinding(ctx, shipped("o-2"), t0.Add(time.Hour))
		require.NoError(t, err)

		c.set(t0.Add(2 * time.Hour))
		err = s.RemoveNumber(ctx, "17000000001")
		require.ErrorIs(t, err, ErrInUse)
		require.EqualError(t, err, "number 17000000001: still in use: 2 active binding(s) and 0 in quarantine; "+
			"as they stand it is free from 2026-11-04T09:00:00Z (the last binding's end plus binding.quarantine)")

		_, err = s.Release(ctx, b1.ID, c.now())
		require.NoError(t, err)
		err = s.RemoveNumber(ctx, "+86 170 0000 0001")
		require.EqualError(t, err, "number 17000000001: still in use: 1 active binding(s) and 1 in quarantine; "+
			"as they stand it is free from 2026-11-04T09:00:00Z (the last binding's end plus binding.quarantine)")

		c.set(t0.Add(26 * time.Hour)) // both ended; o-2 at t0+25h
		err = s.RemoveNumber(ctx, "8617000000001")
		require.EqualError(t, err, "number 17000000001: still in use: 2 ended binding(s) in quarantine until "+
			"2026-11-04T09:00:00Z (binding.quarantine)")
		ok, err := s.IsHostNumber(ctx, "17000000001")
		require.NoError(t, err)
		require.True(t, ok, "a refused removal changed nothing")

		c.set(t0.Add(73 * time.Hour)) // the quarantine of o-2 ends at t0+73h
		require.NoError(t, s.RemoveNumber(ctx, "17000000001"))
		ok, err = s.IsHostNumber(ctx, "17000000001")
		require.NoError(t, err)
		require.False(t, ok, "signalling no longer takes it")
		ns, err := s.ListNumbers(ctx)
		require.NoError(t, err)
		require.Empty(t, ns)
		_, err = s.CreateBinding(ctx, shipped("o-3"), c.now())
		require.ErrorIs(t, err, ErrPoolExhausted, "a removed number is not allocated")
		// It is nobody's host number now: it may be a consignee.
		require.NoError(t, s.AddNumbers(ctx, "17000000002"))
		req := shipped("o-4")
		req.Consignee = "17000000001"
		b4, err := s.CreateBinding(ctx, req, c.now())
		require.NoError(t, err)
		require.Equal(t, "17000000002", b4.Host)
		require.ErrorIs(t, s.RemoveNumber(ctx, "17000000001"), ErrNotFound, "removed twice")
		require.ErrorIs(t, s.RemoveNumber(ctx, "17000000009"), ErrNotFound)
		require.ErrorIs(t, s.RemoveNumber(ctx, "170"), ErrInvalid)

		// Its bindings stay, for the bills.
		require.Equal(t, 3, countBindings(t, s))
		bill, err := s.Bill(ctx, "m1", "2026-11", time.UTC, Rates{}, "CNY")
		require.NoError(t, err)
		require.Equal(t, 3, bill.BindingDays)

		// Added again, it is back in the pool; added twice, it is refused.
		require.NoError(t, s.AddNumbers(ctx, "17000000001"))
		ns, err = s.ListNumbers(ctx)
		require.NoError(t, err)
		require.Len(t, ns, 2)
		require.Equal(t, "17000000001", ns[0].Host)
		require.Equal(t, c.now(), ns[0].CreatedAt, "it joined the pool again now")
		require.Zero(t, ns[0].Active)
		require.ErrorIs(t, s.AddNumbers(ctx, "17000000001"), ErrExists)
		b, err := s.CreateBinding(ctx, shipped("o-3"), c.now())
		require.NoError(t, err)
		require.Equal(t, "17000000001", b.Host, "the least used host")
	})
}

// TestConsigneeIsNoHostNumber: a binding never hides one of vnum's own
// host numbers, in any form, and the refusal stores nothing.
func TestConsigneeIsNoHostNumber(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001", "01062345678")
		ctx := context.Background()
		for _, b := range []string{"17000000001", "+8617000000001", "8617000000001", "0086 170 0000 0001",
			"010 6234 5678", "+861062345678"} {
			req := shipped("o-" + b)
			req.Consignee = b
			_, err := s.CreateBinding(ctx, req, t0)
			require.ErrorIs(t, err, ErrInvalid, b)
			require.EqualError(t, err, "invalid consignee: it is one of vnum's own host numbers; bind the consignee's own phone", b)
		}
		require.Zero(t, countBindings(t, s))
		req := shipped("o-1")
		req.Consignee = "17000000002"
		_, err := s.CreateBinding(ctx, req, t0)
		require.NoError(t, err, "a number next to a host number is fine")
	})
}

// TestMigrationVersionsUnique: every migration of a dialect has its own
// version, and both dialects have the same ones. Two branches that each
// add a migration of the same number would otherwise merge into a store
// that records the version once and silently skips the second file.
func TestMigrationVersionsUnique(t *testing.T) {
	t.Parallel()
	versions := map[string][]string{}
	for _, d := range []dialect{sqliteDialect, postgresDialect} {
		names, err := fs.Glob(migrations, d.migrationDir()+"/*.sql")
		require.NoError(t, err)
		seen := map[string]string{}
		for _, n := range names {
			base := path.Base(n)
			v, _, _ := strings.Cut(base, "_")
			require.Empty(t, seen[v], "%s: %s and %s share version %s", d.migrationDir(), seen[v], base, v)
			seen[v] = base
			versions[d.migrationDir()] = append(versions[d.migrationDir()], base)
		}
	}
	require.Equal(t, versions["migrations/sqlite"], versions["migrations/postgres"], "the same steps in both dialects")
}
