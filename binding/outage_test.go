package binding

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/pgtest"
)

// TestPostgresOutage: while PostgreSQL is down, store calls fail rather
// than hang; once it is back, the same Store works again by itself,
// without being reopened, and nothing written before is lost.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t) // its own server: stopping it must not hit other tests
	ctx := context.Background()
	s, err := Open(ctx, DriverPostgres, srv.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	seed(t, s, "17000000001")
	// Several connections in the pool, all of which the outage breaks.
	for i := range 4 {
		_, err := s.CreateBinding(ctx, shipped("before-"+string(rune('a'+i))), t0)
		require.NoError(t, err)
	}

	require.NoError(t, srv.Stop())
	bounded, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = s.CreateBinding(bounded, shipped("during"), t0)
	cancel()
	require.Error(t, err, "no store, no binding")
	require.NoError(t, srv.Start())

	// A connection the outage broke is found out by the call that uses
	// it (pgx pings only connections idle for more than a second), and is
	// then dropped: at worst each of the pool's connections fails one call.
	failed := 0
	for {
		_, err := s.Merchant(ctx, "m1")
		if err == nil {
			break
		}
		failed++
		require.LessOrEqual(t, failed, pgPoolSize, "the store did not come back: %v", err)
	}
	for i := range 8 {
		_, err := s.CreateBinding(ctx, shipped("after-"+string(rune('a'+i))), t0)
		require.NoError(t, err, "call %d after the restart", i)
	}
	list, err := s.ListBindings(ctx, "m1", "")
	require.NoError(t, err)
	require.Len(t, list, 12, "the bindings from before the outage are kept")
}
