package binding

import (
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// TestOldLayoutFileOpens: testdata/v4.db was written by vnum before the
// migrations were split per dialect (schema_migrations rows 1..4, named
// 0001_init.sql..0004_cdr_node.sql; a merchant, account alice, host
// 17000000001, a binding and one finished call, all at 2026-11-01 08:00
// UTC). This version opens it, applies only what is new, and reads and
// writes its rows as before.
func TestOldLayoutFileOpens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	old, err := os.ReadFile(filepath.Join("testdata", "v4.db"))
	require.NoError(t, err)
	dsn := filepath.Join(t.TempDir(), "vnum.db")
	require.NoError(t, os.WriteFile(dsn, old, 0o600))

	var created bool
	s, err := Open(ctx, DriverSQLite, dsn, ReportCreated(&created))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.False(t, created, "a file with the old schema is not new")
	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	want, latest := embeddedMigrations(t, sqliteDialect)
	require.Equal(t, latest, v)
	var names []string
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM schema_migrations ORDER BY version`)
	require.NoError(t, err)
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"0001_init.sql", "0002_cdr_alive.sql", "0003_caller_kind.sql", "0004_cdr_node.sql"},
		names[:4], "the old versions are kept, not applied again")
	require.Equal(t, want, names, "and every new one is applied")

	at := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	b, err := s.Resolve(ctx, "17000000001", "2173", "m1", at.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, "b_aae3bf77a4860976", b.ID)
	require.Equal(t, "+8613800138000", b.Consignee)
	c, err := s.GetCDR(ctx, "c_e581ba6d6d080ecc")
	require.NoError(t, err)
	require.Equal(t, callrec.CallerAccount, c.CallerKind)
	a, err := s.Account(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, "m1", a.Merchant)
	cb, err := s.ResolveCallback(ctx, "17000000001", "13800138000", at.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, "alice", cb.Account)

	// New bindings keep the distance rule against the old one.
	nb, err := s.CreateBinding(ctx, shipped("o-2"), at.Add(time.Hour))
	require.NoError(t, err)
	require.GreaterOrEqual(t, hamming(nb.Extension, "2173"), 2)
	require.NoError(t, s.SaveRegistration(ctx, callrec.Registration{User: "alice", Contact: "sip:alice@192.0.2.7:5060",
		Source: "192.0.2.7:5060", Transport: "udp", Expires: at.Add(2 * time.Hour)}))
}

// embeddedMigrations returns the file names of d's migrations in the order
// they apply, and the highest version among them: what a store opened by
// this version of vnum has applied.
func embeddedMigrations(t testing.TB, d dialect) (names []string, latest int) {
	t.Helper()
	files, err := fs.Glob(migrations, d.migrationDir()+"/*.sql")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		base := path.Base(f)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		require.NoError(t, err, base)
		names = append(names, base)
		latest = max(latest, v)
	}
	return names, latest
}
