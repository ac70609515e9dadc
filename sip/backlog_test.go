package sip

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
	"github.com/vnum/vnum/spool"
)

// downStore is a store that refuses every call's end while it is down, as
// PostgreSQL restarting or a locked SQLite file does.
type downStore struct {
	*fakeRouter
	down    atomic.Bool
	refused atomic.Int64
}

func (r *downStore) EndCall(ctx context.Context, c *CDR) error {
	if r.down.Load() {
		r.refused.Add(1)
		return errors.New("store unreachable")
	}
	return r.fakeRouter.EndCall(ctx, c)
}

// TestCDREndSurvivesStoreOutage: a call that ends while the store refuses
// writes leaves its record in the backlog (the call itself is over at
// once: no port and no registry entry held); when the store is back the
// record is written, answered and billed, with nothing lost.
func TestCDREndSurvivesStoreOutage(t *testing.T) {
	t.Parallel()
	var store *downStore
	e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"}, nil, func(f *fakeRouter) Router {
		store = &downStore{fakeRouter: f}
		return store
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	nextSession(t, e.carrier)

	store.down.Store(true)
	require.NoError(t, d.Bye(ctx))
	require.Eventually(t, func() bool { return e.srv.PendingCDRs() == 1 }, 10*time.Second, 10*time.Millisecond,
		"the call's end waits in the backlog")
	e.waitNoCalls()
	require.Zero(t, e.ports.InUse())
	require.GreaterOrEqual(t, store.refused.Load(), int64(cdrFinishAttempts))
	refusedSoFar := store.refused.Load()
	require.Eventually(t, func() bool { return store.refused.Load() > refusedSoFar }, 5*time.Second, 10*time.Millisecond,
		"the backlog keeps trying while the store is down")

	store.down.Store(false)
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.False(t, cdr.AnsweredAt.IsZero())
	require.Eventually(t, func() bool { return e.srv.PendingCDRs() == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestCDREndSpooled: an end the store refuses is on disk (the spool)
// before the call forgets it. Written once the store is back, it leaves
// the spool; still unwritten at shutdown, it stays there for the next
// start, and the drain says so in one line.
func TestCDREndSpooled(t *testing.T) {
	t.Parallel()
	for _, back := range []bool{true, false} {
		name := "store back"
		if !back {
			name = "shutdown in the outage"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			sp, err := spool.Open(dir, "vnum-a")
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, sp.Close()) })
			var store *downStore
			e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"}, func(o *Options) { o.Spool = sp },
				func(f *fakeRouter) Router {
					store = &downStore{fakeRouter: f}
					return store
				})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d, _ := e.dialAndKey(ctx, testHost, testExt)
			nextSession(t, e.carrier)
			store.down.Store(true)
			require.NoError(t, d.Bye(ctx))
			require.Eventually(t, func() bool { return e.srv.PendingCDRs() == 1 }, 10*time.Second, 10*time.Millisecond)
			require.Equal(t, 1, sp.Len(), "the end is on disk before the call is forgotten")
			_, err = os.Stat(sp.Path())
			require.NoError(t, err)

			if back {
				store.down.Store(false)
				e.router.waitEnded(t)
				require.Eventually(t, func() bool { return sp.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
				_, err = os.Stat(sp.Path())
				require.ErrorIs(t, err, os.ErrNotExist, "written: the spool forgets it")
				e.srv.Shutdown(context.Background())
				require.NotContains(t, e.logs.String(), "not written at shutdown")
				return
			}
			e.srv.Shutdown(context.Background())
			logs := e.logs.String()
			require.Equal(t, 1, strings.Count(logs, "not written at shutdown"), logs)
			require.Contains(t, logs, `msg="CDR ends not written at shutdown: spooled, the next start writes them" count=1 spooled=1`)
			require.NotContains(t, logs, testNational)
			next, err := spool.Open(dir, "vnum-a") // the next start
			require.NoError(t, err)
			left := next.Left()
			require.Len(t, left, 1)
			require.Equal(t, "caller", string(left[0].HangupBy))
			require.False(t, left[0].AnsweredAt.IsZero(), "the end as the call had it: answered, with its times")
			require.False(t, left[0].EndedAt.IsZero())
			require.NoError(t, next.Close())
		})
	}
}

// TestCDREndLostWithoutSpool: with no spool (or one that refuses the end)
// the drain says how many ends are lost.
func TestCDREndLostWithoutSpool(t *testing.T) {
	t.Parallel()
	var store *downStore
	e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"}, nil, func(f *fakeRouter) Router {
		store = &downStore{fakeRouter: f}
		return store
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	nextSession(t, e.carrier)
	store.down.Store(true)
	require.NoError(t, d.Bye(ctx))
	require.Eventually(t, func() bool { return e.srv.PendingCDRs() == 1 }, 10*time.Second, 10*time.Millisecond)
	e.srv.Shutdown(context.Background())
	require.Contains(t, e.logs.String(), "count=1 spooled=0 lost=1")
}
