package main

import (
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/pgtest"
)

// TestCLIOnPostgres: the CLI works on a PostgreSQL store as on a SQLite
// file: the first command on an empty database says it made a new store,
// and what one command writes the next one reads.
func TestCLIOnPostgres(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	t.Setenv("VNUM_STORE_DRIVER", "postgres")
	t.Setenv("VNUM_STORE_DSN", dsn)

	out, errOut, err := runCLI(t, "merchant", "add", "m1", "--name", "Shop One")
	require.NoError(t, err, errOut)
	require.Contains(t, out, "merchant m1 added")
	require.Equal(t, "vnum: created a new, empty store "+dsn+" (store.dsn; set it with --config FILE or VNUM_STORE_DSN)\n", errOut)

	require.Contains(t, mustRun(t, "account", "add", "m1", "alice", "--password", "correct horse battery"), "account alice added")
	require.Contains(t, mustRun(t, "number", "add", "17000000001"), "1 number(s) added")
	out = mustRun(t, "binding", "create", "--merchant", "m1", "--order", "A1", "--consignee", consignee,
		"--order-status", "shipped")
	require.Contains(t, out, "17000000001")
	out, errOut, err = runCLI(t, "binding", "list", "--merchant", "m1", "--format", "json")
	require.NoError(t, err, errOut)
	require.Empty(t, errOut, "the store is not new any more")
	require.Contains(t, out, `"order": "A1"`)
}

// TestCLIPostgresUnreachable: a PostgreSQL store that does not answer is
// one line naming store.dsn, with the DSN's password masked.
func TestCLIPostgresUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there now
	t.Setenv("VNUM_STORE_DRIVER", "postgres")
	t.Setenv("VNUM_STORE_DSN", fmt.Sprintf("postgres://vnum:Tr0ub4dor@127.0.0.1:%d/vnum?sslmode=disable", port))
	requireOneLineError(t, []string{"number", "list"},
		fmt.Sprintf("store.dsn: cannot reach postgres postgres://vnum:***@127.0.0.1:%d/vnum?sslmode=disable", port))
	_, errOut, _ := runCLI(t, "number", "list")
	require.NotContains(t, errOut, "Tr0ub4dor")
}
