package binding

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/require"
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
	} {
		require.True(t, Unavailable(wrap(err)), name)
	}
	for name, err := range map[string]error{
		"nil":            nil,
		"no table":       &pgconn.PgError{Code: "42P01"},
		"duplicate":      &pgconn.PgError{Code: "23505"},
		"sqlite corrupt": sqlite3.Error{Code: sqlite3.ErrCorrupt},
		"not found":      ErrNotFound,
		"other":          errors.New("boom"),
	} {
		require.False(t, Unavailable(wrap(err)), name)
	}
}
