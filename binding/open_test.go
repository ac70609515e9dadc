package binding

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMustExist: a command that only reads opens the store with
// MustExist, which refuses a store that holds no vnum schema yet and
// creates nothing: no file, no -wal or -shm, no table. A store that
// exists opens as usual.
func TestMustExist(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		dsn := be.newDSN(t)
		_, err := Open(ctx, be.driver, dsn, MustExist())
		require.ErrorIs(t, err, ErrNoStore)
		if be.driver == DriverSQLite {
			require.ErrorContains(t, err, dsn)
			entries, err := os.ReadDir(filepath.Dir(dsn))
			require.NoError(t, err)
			require.Empty(t, entries, "a refused open left files behind")
			// An empty file, as touch leaves it, holds no store either.
			require.NoError(t, os.WriteFile(dsn, nil, 0o600))
			_, err = Open(ctx, be.driver, dsn, MustExist())
			require.ErrorIs(t, err, ErrNoStore)
			require.NoError(t, os.Remove(dsn))
		}

		var created bool
		s, err := Open(ctx, be.driver, dsn, ReportCreated(&created))
		require.NoError(t, err)
		require.True(t, created, "the refused open created nothing")
		require.NoError(t, s.AddMerchant(ctx, "m1", "Shop"))
		require.NoError(t, s.Close())
		s, err = Open(ctx, be.driver, dsn, MustExist())
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		_, err = s.Merchant(ctx, "m1")
		require.NoError(t, err)
	})
}
