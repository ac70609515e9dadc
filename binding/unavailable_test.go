package binding

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/internal/testdisk"
)

// TestUnavailable: the store errors a caller may retry later, and those
// that are faults, however deeply wrapped.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("resolve: %w", err) }
	for name, err := range map[string]error{
		"deadline":      context.DeadlineExceeded,
		"refused":       &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")},
		"shutdown":      &pgconn.PgError{Code: "57P01"},
		"connection":    &pgconn.PgError{Code: "08006"},
		"too many":      &pgconn.PgError{Code: "53300"},
		"lock timeout":  &pgconn.PgError{Code: "55P03"},
		"serialisation": &pgconn.PgError{Code: "40001"},
		"sqlite busy":   sqlite3.Error{Code: sqlite3.ErrBusy},
		"disk full":     &pgconn.PgError{Code: "53100"},
		"sqlite full":   sqlite3.Error{Code: sqlite3.ErrFull},
		"sqlite read-only file system": sqlite3.Error{Code: sqlite3.ErrReadonly,
			ExtendedCode: sqlite3.ErrReadonlyCantLock},
		"sqlite write":   sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrWrite},
		"sqlite fsync":   sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrFsync},
		"sqlite shmsize": sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrSHMSize},
	} {
		require.True(t, Unavailable(wrap(err)), name)
	}
	for name, err := range map[string]error{
		"nil":            nil,
		"no table":       &pgconn.PgError{Code: "42P01"},
		"duplicate":      &pgconn.PgError{Code: "23505"},
		"sqlite corrupt": sqlite3.Error{Code: sqlite3.ErrCorrupt},
		"sqlite read":    sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrRead},
		"sqlite nomem":   sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrNoMem},
		"not found":      ErrNotFound,
		"other":          errors.New("boom"),
	} {
		require.False(t, Unavailable(wrap(err)), name)
	}
}

// TestFullDiskIsUnavailable fills the file system of a SQLite store (a
// tmpfs of its own) under it: its writes fail with an error Unavailable
// takes for a store that cannot answer now (signalling refuses new calls
// 503 with Retry-After, not 500), its reads go on, and once space is
// freed its writes work again.
func TestFullDiskIsUnavailable(t *testing.T) {
	t.Parallel()
	dir := testdisk.Mount(t, 8<<20)
	s, err := Open(context.Background(), DriverSQLite, filepath.Join(dir, "vnum.db"), WithNode("vnum-a"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	seed(t, s, "17000000001")
	ctx := context.Background()
	start := func(n int) error {
		var err error
		for i := range n {
			// A call's first write, with a long call id so that the WAL
			// must grow rather than reuse pages it has.
			c := &callrec.Record{CallID: fmt.Sprintf("%d-%s", i, strings.Repeat("x", 2000)), Merchant: "m1",
				Host: "17000000001", StartedAt: t0}
			if err = s.StartCDR(ctx, c); err != nil {
				return err
			}
		}
		return nil
	}
	require.NoError(t, start(1))

	free := testdisk.Fill(t, dir)
	err = start(200)
	require.Error(t, err, "no write fails on a full disk")
	t.Logf("a write on the full disk: %v", err)
	require.True(t, Unavailable(err), "a full disk is a store that cannot answer now: %v", err)
	ok, err := s.IsHostNumber(ctx, "17000000001")
	require.NoError(t, err, "reads go on")
	require.True(t, ok)

	free()
	require.NoError(t, start(1), "writes work again once there is space")
}
