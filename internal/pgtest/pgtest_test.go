package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { Main(m) }

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

// TestDatabasesAreSeparate: each test's database starts empty and sees
// nothing of another's.
func TestDatabasesAreSeparate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := open(t, DSN(t)), open(t, DSN(t))
	_, err := a.ExecContext(ctx, `CREATE TABLE x (v INTEGER)`)
	require.NoError(t, err)
	var n int
	require.NoError(t, b.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'x'`).Scan(&n))
	require.Zero(t, n)
}

// TestRestartKeepsData: a server stopped at once (as in an outage) refuses
// connections, and after Start the same DSN reaches the same data.
func TestRestartKeepsData(t *testing.T) {
	// Not parallel: it stops the server the other tests use.
	ctx := context.Background()
	s := Shared(t)
	dsn := s.NewDatabase(t)
	db := open(t, dsn)
	_, err := db.ExecContext(ctx, `CREATE TABLE x (v INTEGER); INSERT INTO x VALUES (42)`)
	require.NoError(t, err)

	require.NoError(t, s.Stop())
	require.Error(t, db.PingContext(ctx), "a stopped server answers nothing")
	require.NoError(t, s.Start())

	var v int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT v FROM x`).Scan(&v), "the pool reconnects by itself")
	require.Equal(t, 42, v)

	require.NoError(t, s.Restart())
	require.NoError(t, db.QueryRowContext(ctx, `SELECT v FROM x`).Scan(&v))
	require.Equal(t, 42, v)
}

// TestFindBin: the programs are found outside PATH where Debian puts
// them, and their absence is ErrNoPostgres naming the package to install.
func TestFindBin(t *testing.T) {
	// Not parallel: it changes PATH and the search directory.
	dir, err := findBin()
	if err != nil {
		SkipOrFail(t, err)
	}
	require.FileExists(t, filepath.Join(dir, "initdb"))
	saved := debianBins
	t.Cleanup(func() { debianBins = saved })
	t.Setenv("PATH", t.TempDir())

	if debs, _ := filepath.Glob(debianBins); len(debs) > 0 {
		got, err := findBin()
		require.NoError(t, err, "found outside PATH")
		require.FileExists(t, filepath.Join(got, "postgres"))
	}

	debianBins = filepath.Join(t.TempDir(), "*", "bin")
	_, err = New()
	require.ErrorIs(t, err, ErrNoPostgres)
	require.ErrorContains(t, err, "install Debian's package postgresql")
}

// TestStartsAgainWhenPortTaken: a port taken by another process between
// the moment Start lets go of it and the postmaster's bind costs a fresh
// port on the first start, and a short wait on a restart, whose port DSNs
// already name.
func TestStartsAgainWhenPortTaken(t *testing.T) {
	// Not parallel: it sets portLetGo.
	if _, err := findBin(); err != nil {
		SkipOrFail(t, err)
	}
	var taken []int
	var thief net.Listener
	portLetGo = func(port int) {
		if thief != nil || len(taken) > 0 && taken[len(taken)-1] == port {
			return
		}
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		require.NoError(t, err)
		thief = l
		taken = append(taken, port)
	}
	t.Cleanup(func() {
		portLetGo = nil
		if thief != nil {
			_ = thief.Close()
		}
	})

	s := Start(t)
	require.Len(t, taken, 1)
	require.NotEqual(t, taken[0], s.Port(), "the first start moved to a fresh port")
	require.NoError(t, thief.Close())
	thief = nil
	db := open(t, s.NewDatabase(t))
	require.NoError(t, db.PingContext(context.Background()))

	// A restart waits for the port its DSNs name.
	portLetGo = func(port int) {
		if thief != nil || len(taken) > 1 {
			return
		}
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		require.NoError(t, err)
		thief = l
		taken = append(taken, port)
		go func() {
			time.Sleep(300 * time.Millisecond)
			_ = l.Close()
		}()
	}
	require.NoError(t, s.Restart())
	require.Len(t, taken, 2)
	require.Equal(t, s.Port(), taken[1], "the restart kept its port")
	require.NoError(t, db.PingContext(context.Background()))
}
