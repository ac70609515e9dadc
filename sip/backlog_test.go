package sip

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
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
