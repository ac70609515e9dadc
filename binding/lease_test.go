package binding

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// movingClock is a clock a test moves by hand; every store of a test
// reads the same one, as nodes whose clocks agree would.
type movingClock struct{ ns atomic.Int64 }

func newMovingClock(at time.Time) *movingClock {
	c := &movingClock{}
	c.ns.Store(at.UnixNano())
	return c
}

func (c *movingClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *movingClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *movingClock) option() Option          { return WithClock(c.now) }

// holder is a lease holder of the tests, on a machine of its own.
func holder(name string, pid int) Holder {
	return Holder{Host: name, PID: pid, Machine: "m-" + name}
}

// requireHeldBy checks that err refuses a lease that h holds.
func requireHeldBy(t *testing.T, err error, h Holder) {
	t.Helper()
	require.ErrorIs(t, err, ErrLeaseHeld)
	var held *LeaseHeldError
	require.ErrorAs(t, err, &held)
	require.Equal(t, h, held.State.Holder)
}

// openNode opens another store of node on dsn, closed at cleanup.
func openNode(t *testing.T, be backend, dsn, node string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), be.driver, dsn, append(opts, WithNode(node))...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// TestLeaseOneHolder: a node's lease is one process's until it releases
// it; a second process of the node is refused, naming the holder, and
// takes it once it is released. Other nodes have leases of their own.
func TestLeaseOneHolder(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		clock := newMovingClock(t0)
		a, dsn := be.open(t, WithNode("vnum-1"), clock.option())
		b := openNode(t, be, dsn, "vnum-1", clock.option())
		other := openNode(t, be, dsn, "vnum-2", clock.option())

		_, err := b.NodeLease(ctx, "vnum-1")
		require.ErrorIs(t, err, ErrNotFound, "never taken")
		la, err := a.TakeLease(ctx, holder("a", 100), LeaseOptions{})
		require.NoError(t, err)
		_, ok := la.Previous()
		require.False(t, ok, "the first lease of the node")
		require.Equal(t, "vnum-1", la.Node())

		clock.advance(time.Second)
		_, err = b.TakeLease(ctx, holder("b", 200), LeaseOptions{})
		requireHeldBy(t, err, holder("a", 100))
		var held *LeaseHeldError
		require.ErrorAs(t, err, &held)
		require.Equal(t, t0, held.State.TakenAt)
		require.Equal(t, t0, held.State.RenewedAt)
		require.Equal(t, t0.Add(LeaseTTL), held.State.ExpiresAt)
		require.Contains(t, err.Error(), `node "vnum-1" is held by pid 100 on host a`)

		_, err = other.TakeLease(ctx, holder("c", 300), LeaseOptions{})
		require.NoError(t, err, "another node's lease is its own")

		require.NoError(t, la.Release(ctx))
		st, err := b.NodeLease(ctx, "vnum-1")
		require.NoError(t, err)
		require.False(t, st.Held(clock.now()))
		require.Equal(t, clock.now(), st.ReleasedAt)

		lb, err := b.TakeLease(ctx, holder("b", 200), LeaseOptions{})
		require.NoError(t, err, "a released lease is taken at once")
		prev, ok := lb.Previous()
		require.True(t, ok)
		require.Equal(t, holder("a", 100), prev.Holder)
		require.False(t, prev.ReleasedAt.IsZero(), "the last holder stopped cleanly")
		require.ErrorIs(t, la.Renew(ctx), ErrLeaseLost, "a released lease is not renewed")
	})
}

// TestLeaseExpires: a holder that renews keeps its lease; one that stops
// renewing (killed) loses it LeaseTTL after its last renewal, and the
// next process takes it, sees that the last holder did not release it,
// and is the only one to close the node's open rows. The old holder's
// renewal then reports the loss, naming the new holder.
func TestLeaseExpires(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		clock := newMovingClock(t0)
		a, dsn := be.open(t, WithNode("vnum-1"), clock.option())
		seed(t, a)
		b := openNode(t, be, dsn, "vnum-1", clock.option())
		la, err := a.TakeLease(ctx, holder("a", 100), LeaseOptions{})
		require.NoError(t, err)
		c := &callrec.Record{CallID: "live", Merchant: "m1", AnsweredAt: t0}
		require.NoError(t, a.StartCDR(ctx, c))

		for range 5 { // renewed every LeaseRenewEvery: held for good
			clock.advance(LeaseRenewEvery)
			require.NoError(t, la.Renew(ctx))
			_, err = b.TakeLease(ctx, holder("b", 200), LeaseOptions{})
			requireHeldBy(t, err, holder("a", 100))
		}
		// a is killed: no more renewals.
		clock.advance(LeaseTTL - time.Nanosecond)
		_, err = b.TakeLease(ctx, holder("b", 200), LeaseOptions{})
		requireHeldBy(t, err, holder("a", 100))
		got, err := b.GetCDR(ctx, c.ID)
		require.NoError(t, err)
		require.True(t, got.EndedAt.IsZero(), "a refused process closes nothing")

		clock.advance(time.Nanosecond)
		lb, err := b.TakeLease(ctx, holder("b", 200), LeaseOptions{})
		require.NoError(t, err, "an expired lease is taken")
		prev, ok := lb.Previous()
		require.True(t, ok)
		require.Equal(t, holder("a", 100), prev.Holder)
		require.True(t, prev.ReleasedAt.IsZero(), "the last holder did not stop cleanly")

		// The old holder, back from the dead, closes nothing and learns
		// that it lost the lease.
		rec, err := la.RecoverInterrupted(ctx)
		require.ErrorIs(t, err, ErrLeaseLost)
		require.Zero(t, rec.Closed)
		err = la.Renew(ctx)
		require.ErrorIs(t, err, ErrLeaseLost)
		require.ErrorContains(t, err, "by pid 200 on host b")
		require.NoError(t, la.Release(ctx))
		st, err := b.NodeLease(ctx, "vnum-1")
		require.NoError(t, err)
		require.True(t, st.Held(clock.now()), "the old holder's release leaves the new holder's lease alone")
		require.Equal(t, holder("b", 200), st.Holder)

		rec, err = lb.RecoverInterrupted(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, rec.Closed)
		got, err = b.GetCDR(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, callrec.DispositionInterrupted, got.Disposition)
	})
}

// TestLeaseGone: a lease not yet expired whose holder Gone reports dead
// (a process no longer running on this machine) is taken at once; Gone
// sees the lease as the store has it.
func TestLeaseGone(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		clock := newMovingClock(t0)
		a, dsn := be.open(t, WithNode("vnum-1"), clock.option())
		b := openNode(t, be, dsn, "vnum-1", clock.option())
		_, err := a.TakeLease(ctx, holder("a", 100), LeaseOptions{})
		require.NoError(t, err)
		var asked []Holder
		alive := func(st LeaseState) bool { asked = append(asked, st.Holder); return false }
		_, err = b.TakeLease(ctx, holder("b", 200), LeaseOptions{Gone: alive})
		requireHeldBy(t, err, holder("a", 100))
		require.Equal(t, []Holder{holder("a", 100)}, asked)

		dead := func(st LeaseState) bool { return st.Holder.PID == 100 }
		lb, err := b.TakeLease(ctx, holder("b", 200), LeaseOptions{Gone: dead})
		require.NoError(t, err)
		prev, ok := lb.Previous()
		require.True(t, ok)
		require.Equal(t, holder("a", 100), prev.Holder)
	})
}

// TestLeaseRace: processes of one node starting at once, on two or more
// stores of one database: exactly one takes the lease, the others are
// refused naming it. The same when they race for an expired lease.
func TestLeaseRace(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		const racers, rounds = 4, 5
		ctx := context.Background()
		clock := newMovingClock(t0)
		first, dsn := be.open(t, WithNode("vnum-1"), clock.option())
		stores := []*Store{first}
		for range racers - 1 {
			stores = append(stores, openNode(t, be, dsn, "vnum-1", clock.option()))
		}
		for round := range rounds {
			if round > 0 {
				// The last winner dies: its lease expires.
				clock.advance(LeaseTTL)
			}
			var wg sync.WaitGroup
			leases := make([]*Lease, racers)
			errs := make([]error, racers)
			for i, s := range stores {
				wg.Go(func() { leases[i], errs[i] = s.TakeLease(ctx, holder(fmt.Sprint("r", i), 100+i), LeaseOptions{}) })
			}
			wg.Wait()
			winner := -1
			for i, err := range errs {
				if err == nil {
					require.Equal(t, -1, winner, "round %d: two processes took the lease", round)
					winner = i
					continue
				}
				require.ErrorIs(t, err, ErrLeaseHeld, "round %d", round)
			}
			require.NotEqual(t, -1, winner, "round %d: nobody took the lease: %v", round, errors.Join(errs...))
			for i, err := range errs {
				if i != winner {
					requireHeldBy(t, err, holder(fmt.Sprint("r", winner), 100+winner))
				}
			}
			st, err := first.NodeLease(ctx, "vnum-1")
			require.NoError(t, err)
			require.Equal(t, holder(fmt.Sprint("r", winner), 100+winner), st.Holder)
			require.NoError(t, leases[winner].Renew(ctx), "the winner holds it")
		}
	})
}

// TestLeaseNeedsNode: a store opened without a node has no lease to take.
func TestLeaseNeedsNode(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	_, err := s.TakeLease(context.Background(), holder("a", 1), LeaseOptions{})
	require.ErrorIs(t, err, ErrInvalid)
}
