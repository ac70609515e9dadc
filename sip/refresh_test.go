package sip

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// refreshedCDR is one RefreshCall the fake router received.
type refreshedCDR struct {
	cdr   CDR
	alive time.Time
}

func (r *fakeRouter) RefreshCall(_ context.Context, c *CDR, alive time.Time) error {
	r.mu.Lock()
	r.cdrs[c.ID] = *c
	r.mu.Unlock()
	select {
	case r.refreshed <- refreshedCDR{cdr: *c, alive: alive}:
	default:
	}
	return nil
}

// nextRefresh waits for the next refresh of a CDR row.
func (r *fakeRouter) nextRefresh(t *testing.T) refreshedCDR {
	t.Helper()
	select {
	case c := <-r.refreshed:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no CDR refresh")
	}
	return refreshedCDR{}
}

// TestAnsweredCallRowKeptCurrent pins README "CDRs and billing": while a call is answered
// its row is refreshed with the time it was last known to be up, so that
// a crash keeps the talk time. The interval is shortened for the test.
func TestAnsweredCallRowKeptCurrent(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) { o.CDRRefresh = 50 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	nextInvite(t, e.carrier)
	nextSession(t, e.carrier)

	var last time.Time
	for range 3 {
		r := e.router.nextRefresh(t)
		require.Equal(t, "b1", r.cdr.BindingID)
		require.False(t, r.cdr.AnsweredAt.IsZero(), "only an answered call is refreshed")
		require.True(t, r.cdr.EndedAt.IsZero(), "a refresh does not end the call")
		require.True(t, r.alive.After(r.cdr.AnsweredAt), "alive %s, answered %s", r.alive, r.cdr.AnsweredAt)
		require.True(t, r.alive.After(last), "each refresh is later than the one before")
		last = r.alive
	}

	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.False(t, cdr.EndedAt.Before(last), "the end is after the last refresh")
	e.waitNoCalls()
	// No refresh after the end: drain what was sent before it.
	for {
		select {
		case r := <-e.router.refreshed:
			require.False(t, r.alive.After(cdr.EndedAt), "refreshed after the end")
			continue
		default:
		}
		break
	}
}
