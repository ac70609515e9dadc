package binding

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/internal/pgtest"
)

// openTest opens a store on a fresh SQLite file and closes it at cleanup,
// for the tests of what only SQLite has.
func openTest(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	return sqliteBackend.open(t, opts...)
}

// backend is a store driver the tests run against.
type backend struct {
	driver string
	// newDSN returns the DSN of a new, empty database.
	newDSN func(t testing.TB) string
}

var (
	sqliteBackend = backend{DriverSQLite, func(t testing.TB) string { return filepath.Join(t.TempDir(), "vnum.db") }}
	// postgresBackend is a database on the test binary's PostgreSQL
	// server; without PostgreSQL installed its tests are skipped, unless
	// VNUMTEST_REQUIRE_POSTGRES=1.
	postgresBackend = backend{DriverPostgres, pgtest.DSN}
)

// open opens a store on a new, empty database and closes it at cleanup;
// the DSN it returns opens the same database again.
func (be backend) open(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	dsn := be.newDSN(t)
	s, err := Open(context.Background(), be.driver, dsn, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s, dsn
}

// eachBackend runs fn as the parallel subtests sqlite and postgres, so
// that every rule of the store is checked on both databases.
func eachBackend(t *testing.T, fn func(t *testing.T, be backend)) {
	t.Helper()
	for _, be := range []backend{sqliteBackend, postgresBackend} {
		t.Run(be.driver, func(t *testing.T) {
			t.Parallel()
			fn(t, be)
		})
	}
}

// seed adds merchant m1 and the given host numbers.
func seed(t testing.TB, s *Store, hosts ...string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, s.AddMerchant(ctx, "m1", "Shop One"))
	require.NoError(t, s.AddMerchant(ctx, "m2", "Shop Two"))
	if len(hosts) > 0 {
		require.NoError(t, s.AddNumbers(ctx, hosts...))
	}
}

func TestOpenMigrates(t *testing.T) {
	t.Parallel()
	var created bool
	s, dsn := openTest(t, ReportCreated(&created))
	require.True(t, created, "a new file is reported")
	ctx := context.Background()
	_, latest := embeddedMigrations(t, sqliteDialect)
	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, latest, v)
	require.NoError(t, s.Ping(ctx))

	var mode string
	require.NoError(t, s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode))
	require.Equal(t, "wal", mode)
	var fk int
	require.NoError(t, s.db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk))
	require.Equal(t, 1, fk)

	// Opening again applies nothing twice.
	s2, err := Open(ctx, DriverSQLite, dsn, ReportCreated(&created))
	require.NoError(t, err)
	require.False(t, created)
	v, err = s2.SchemaVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, latest, v)
	require.NoError(t, s2.Close())
}

// TestOpenPostgresMigratesOnce: nodes that start at once against an empty
// PostgreSQL database all open it, and the schema is applied once (the
// migration lock); the first open that finds no schema reports it new.
func TestOpenPostgresMigratesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	const nodes = 4
	stores := make([]*Store, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { stores[i], errs[i] = Open(ctx, DriverPostgres, dsn, WithNode(fmt.Sprintf("vnum-%d", i))) })
	}
	wg.Wait()
	for i := range nodes {
		require.NoError(t, errs[i], "node %d", i)
		t.Cleanup(func() { require.NoError(t, stores[i].Close()) })
	}
	var rows, versions int
	require.NoError(t, stores[0].db.QueryRowContext(ctx,
		`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&rows, &versions))
	names, latest := embeddedMigrations(t, postgresDialect)
	require.Equal(t, len(names), rows)
	require.Equal(t, len(names), versions)
	v, err := stores[0].SchemaVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, latest, v)

	var created bool
	again, err := Open(ctx, DriverPostgres, dsn, ReportCreated(&created))
	require.NoError(t, err)
	require.False(t, created, "a database with the schema is not new")
	require.NoError(t, again.Close())
	var fresh bool
	s, err := Open(ctx, DriverPostgres, pgtest.DSN(t), ReportCreated(&fresh))
	require.NoError(t, err)
	require.True(t, fresh, "an empty database is reported new")
	require.NoError(t, s.Close())
}

func TestOpenDrivers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := Open(ctx, "mysql", "x")
	require.ErrorIs(t, err, ErrInvalid)
	_, err = Open(ctx, DriverSQLite, "")
	require.ErrorIs(t, err, ErrInvalid)
	_, err = Open(ctx, DriverPostgres, " ")
	require.ErrorIs(t, err, ErrInvalid)
	_, err = Open(ctx, DriverSQLite, "x.db", WithPolicy(Policy{}))
	require.ErrorIs(t, err, ErrInvalid)
}

// TestOpenPostgresErrorsMaskPassword: a PostgreSQL store that cannot be
// reached, or a DSN that is not one, is an error that names the DSN with
// its password masked.
func TestOpenPostgresErrorsMaskPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there now

	dsn := fmt.Sprintf("postgres://vnum:s3cr3t-pw@127.0.0.1:%d/vnum?sslmode=disable&connect_timeout=5", port)
	_, err = Open(ctx, DriverPostgres, dsn)
	require.Error(t, err)
	require.ErrorContains(t, err, fmt.Sprintf("postgres://vnum:***@127.0.0.1:%d/vnum", port))
	require.ErrorContains(t, err, "connection refused")
	require.NotContains(t, err.Error(), "s3cr3t-pw")
	require.NotContains(t, err.Error(), "\n", "one line")
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr, "the cause stays in the chain")

	_, err = Open(ctx, DriverPostgres, "postgres://vnum:s3cr3t-pw@db:notaport/vnum")
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "postgres://vnum:***@db:notaport/vnum")
	require.NotContains(t, err.Error(), "s3cr3t-pw")

	_, err = Open(ctx, DriverPostgres, fmt.Sprintf("host=127.0.0.1 port=%d user=vnum password=s3cr3t-pw connect_timeout=5", port))
	require.Error(t, err)
	require.ErrorContains(t, err, "password=***")
	require.NotContains(t, err.Error(), "s3cr3t-pw")
}

// TestRebind: PostgreSQL gets $1..$n for the ? placeholders, in order,
// and a ? inside a quoted string or identifier stays.
func TestRebind(t *testing.T) {
	t.Parallel()
	q := `SELECT "a?b", 'it''s ?' FROM t WHERE x = ? AND y IN (?, ?)`
	require.Equal(t, `SELECT "a?b", 'it''s ?' FROM t WHERE x = $1 AND y IN ($2, $3)`, postgresDialect.rebind(q))
	require.Equal(t, q, sqliteDialect.rebind(q))
	require.Equal(t, "SELECT 1", postgresDialect.rebind("SELECT 1"))
}

func TestMerchantsAndAccounts(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		ctx := context.Background()
		require.NoError(t, s.AddMerchant(ctx, "shop-1", "Shop"))
		require.ErrorIs(t, s.AddMerchant(ctx, "shop-1", "Again"), ErrExists)
		require.ErrorIs(t, s.AddMerchant(ctx, "bad id", "x"), ErrInvalid)
		require.ErrorIs(t, s.AddMerchant(ctx, "", "x"), ErrInvalid)

		require.NoError(t, s.AddAccount(ctx, "shop-1", "alice", "correct horse"))
		require.ErrorIs(t, s.AddAccount(ctx, "shop-1", "alice", "correct horse"), ErrExists)
		require.ErrorIs(t, s.AddAccount(ctx, "nobody", "bob", "correct horse"), ErrNotFound)
		require.ErrorIs(t, s.AddAccount(ctx, "shop-1", "bob", "short"), ErrInvalid)

		a, err := s.Account(ctx, "alice")
		require.NoError(t, err)
		md := md5.Sum([]byte("alice:vnum:correct horse"))
		sh := sha256.Sum256([]byte("alice:vnum:correct horse"))
		require.Equal(t, callrec.Account{User: "alice", Merchant: "shop-1",
			HA1MD5: hex.EncodeToString(md[:]), HA1SHA256: hex.EncodeToString(sh[:])}, a)
		_, err = s.Account(ctx, "carol")
		require.ErrorIs(t, err, ErrNotFound)

		// The password is nowhere in the database.
		var n int
		require.NoError(t, s.db.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM accounts WHERE "user" || ha1_md5 || ha1_sha256 LIKE '%horse%'`).Scan(&n))
		require.Zero(t, n)
	})
}

func TestHA1KnownVectors(t *testing.T) {
	t.Parallel()
	// RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life.
	require.Equal(t, "939e7578ed9e3c518a452acee763bce9", HA1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life"))
	// RFC 7616 §3.9.1 uses the same triple form; its SHA-256 HA1 of
	// Mufasa:http-auth@example.org:Circle of Life.
	require.Equal(t, "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232",
		HA1("SHA-256", "Mufasa", "http-auth@example.org", "Circle of Life"))
	require.Empty(t, HA1("SHA-512", "a", "b", "c"))
}

func TestNumbers(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		ctx := context.Background()
		require.NoError(t, s.AddNumbers(ctx, "17000000001", "+8617000000002", "86 170-0000-0003"))
		// All or nothing: one bad number stores none of the batch.
		require.ErrorIs(t, s.AddNumbers(ctx, "17000000004", "123"), ErrInvalid)
		require.ErrorIs(t, s.AddNumbers(ctx, "17000000004", "17000000001"), ErrExists)
		require.ErrorIs(t, s.AddNumbers(ctx), ErrInvalid)

		ns, err := s.ListNumbers(ctx)
		require.NoError(t, err)
		require.Len(t, ns, 3)
		require.Equal(t, "17000000001", ns[0].Host)
		require.Equal(t, "17000000003", ns[2].Host)

		ok, err := s.IsHostNumber(ctx, "+8617000000002")
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = s.IsHostNumber(ctx, "17000000004")
		require.NoError(t, err)
		require.False(t, ok)
		ok, err = s.IsHostNumber(ctx, "garbage")
		require.NoError(t, err)
		require.False(t, ok)
	})
}

func TestMoney(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in   string
		want Micros
		out  string
	}{
		"rental":   {"0.00018", 180, "0.00018"},
		"minute":   {"0.02", 20000, "0.02000"},
		"whole":    {"3", 3_000_000, "3.00000"},
		"six":      {"0.000181", 181, "0.000181"},
		"zero":     {"0", 0, "0.00000"},
		"fee":      {"0.0054", 5400, "0.00540"},
		"trailing": {"1.500000", 1_500_000, "1.50000"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, err := ParseMicros(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, m)
			require.Equal(t, tc.out, m.String())
		})
	}
	for _, bad := range []string{"", "-1", "1.", ".5", "0.0000001", "1e3", "abc", "99999999999999999"} {
		_, err := ParseMicros(bad)
		require.ErrorIs(t, err, ErrInvalid, bad)
	}
	require.Equal(t, "-0.00018", Micros(-180).String())
	b, err := Micros(5400).MarshalJSON()
	require.NoError(t, err)
	require.Equal(t, `"0.00540"`, string(b))
}

// fixedClock is a store clock that always reads at.
func fixedClock(at time.Time) Option { return WithClock(func() time.Time { return at }) }

// TestLockedFileFailsWithinBusyTimeout: while another process holds the
// SQLite file's write lock, a write fails after the store's busy timeout
// (store.timeout for a server), not SQLite's default wait; reads go on
// (WAL), and writes work again once the lock is gone.
func TestLockedFileFailsWithinBusyTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, dsn := openTest(t, WithBusyTimeout(200*time.Millisecond))
	seed(t, s, "17000000001")
	other, err := sql.Open("sqlite3", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	lock, err := other.Conn(ctx)
	require.NoError(t, err)
	_, err = lock.ExecContext(ctx, "BEGIN EXCLUSIVE")
	require.NoError(t, err)

	start := time.Now()
	err = s.AddMerchant(ctx, "m3", "Shop Three")
	require.ErrorContains(t, err, "locked")
	require.Less(t, time.Since(start), 5*time.Second, "the write gave up after the busy timeout, not SQLite's default")
	_, err = s.Merchant(ctx, "m3")
	require.ErrorIs(t, err, ErrNotFound, "the failed write stored nothing")
	ok, err := s.IsHostNumber(ctx, "17000000001")
	require.NoError(t, err, "readers are not held by the writer (WAL)")
	require.True(t, ok)

	_, err = lock.ExecContext(ctx, "ROLLBACK")
	require.NoError(t, err)
	require.NoError(t, lock.Close())
	require.NoError(t, s.AddMerchant(ctx, "m3", "Shop Three"), "the store recovers by itself")
}

// TestPostgresLockWaitIsBounded: while another node holds the allocation
// lock (a stuck transaction), a create on PostgreSQL fails after the
// store's busy timeout (store.timeout for a server) or the caller's
// deadline, whichever comes first, instead of waiting for ever; it stores
// nothing, and creates work again once the lock is gone.
func TestPostgresLockWaitIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, dsn := postgresBackend.open(t, WithBusyTimeout(200*time.Millisecond))
	seed(t, s, "17000000001")
	other, err := Open(ctx, DriverPostgres, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, other.Close()) })
	stuck, err := other.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = stuck.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, allocLock)
	require.NoError(t, err)

	start := time.Now()
	_, err = s.CreateBinding(ctx, shipped("o-1"), t0)
	require.ErrorContains(t, err, "lock timeout")
	require.Less(t, time.Since(start), 5*time.Second, "the create gave up after the busy timeout")

	deadline, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	longer, err := Open(ctx, DriverPostgres, dsn, WithBusyTimeout(time.Hour))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, longer.Close()) })
	_, err = longer.CreateBinding(deadline, shipped("o-1"), t0)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the caller's deadline ends the wait")

	require.Zero(t, countBindings(t, s), "the failed creates stored nothing")
	require.NoError(t, stuck.Rollback())
	_, err = s.CreateBinding(ctx, shipped("o-1"), t0)
	require.NoError(t, err, "the store recovers by itself")
}
