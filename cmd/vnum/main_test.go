package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// runCLI runs a fresh command tree in process, as `vnum args...`.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	cfg = nil
	err = execute(context.Background(), newRootCmd(), args, &out, &errb)
	return out.String(), errb.String(), err
}

// mustRun runs the CLI and requires success.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, args...)
	require.NoError(t, err, "vnum %s: %s", strings.Join(args, " "), errOut)
	return out
}

// useTempStore points VNUM_STORE_DSN at a fresh SQLite file.
func useTempStore(t *testing.T) string {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "vnum.db")
	t.Setenv("VNUM_STORE_DSN", dsn)
	return dsn
}

const consignee = "13800138000"

// testBinding is what the tests read of `vnum binding create --format json`.
type testBinding struct{ ID, Host, Extension string }

// shippedBinding adds merchant m1 and host number 17000000001 through the
// CLI and binds order o1 of m1 to consignee, shipped.
func shippedBinding(t *testing.T) testBinding {
	t.Helper()
	mustRun(t, "merchant", "add", "m1", "--name", "Shop One")
	mustRun(t, "number", "add", "17000000001")
	var b testBinding
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "binding", "create", "--merchant", "m1", "--order", "o1",
		"--consignee", consignee, "--order-status", "shipped", "--format", "json")), &b))
	return b
}

func TestFlow(t *testing.T) {
	useTempStore(t)
	var all strings.Builder
	run := func(args ...string) string {
		t.Helper()
		out := mustRun(t, args...)
		all.WriteString(out)
		return out
	}

	require.Contains(t, run("merchant", "add", "m1", "--name", "Shop One"), "merchant m1 added")
	out := run("account", "add", "m1", "alice", "--password", "correct horse battery")
	require.Contains(t, out, "account alice added")
	require.NotContains(t, out, "horse")
	require.Contains(t, run("number", "add", "17000000001", "+8617000000002"), "2 number(s) added")

	out = run("number", "list")
	require.Contains(t, out, "17000000001")
	require.Contains(t, out, "17000000002")

	out = run("binding", "create", "--merchant", "m1", "--order", "o-1", "--consignee", "+86 138-0013-8000",
		"--order-status", "shipped", "--format", "json")
	var created map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &created))
	id := created["id"].(string)
	require.Regexp(t, `^b_[0-9a-f]{16}$`, id)
	require.Regexp(t, `^1700000000[12]转[0-9]{4}$`, created["display"])
	require.Equal(t, "active", created["status"])
	require.NotContains(t, created, "consignee")

	// Unpaid: refused with one clear line and nothing stored.
	out, errOut, err := runCLI(t, "binding", "create", "--merchant", "m1", "--order", "o-2",
		"--consignee", consignee, "--order-status", "unpaid")
	require.Error(t, err)
	require.Empty(t, out)
	require.Equal(t, "vnum: order not shipped: status unpaid\n", errOut)
	all.WriteString(errOut)

	// A second active binding for the same order is refused.
	_, errOut, err = runCLI(t, "binding", "create", "--merchant", "m1", "--order", "o-1",
		"--consignee", consignee, "--order-status", "delivered")
	require.Error(t, err)
	require.Contains(t, errOut, "already exists")
	all.WriteString(errOut)

	run("binding", "create", "--merchant", "m1", "--order", "o-3", "--consignee", consignee,
		"--order-status", "after_sale", "--ttl", "1h")

	// show in all three formats.
	out = run("binding", "show", id)
	require.Contains(t, out, "EXTENSION")
	require.Contains(t, out, id)
	out = run("binding", "show", id, "--format", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "id", recs[0][0])
	require.Equal(t, id, recs[1][0])
	out = run("binding", "show", id, "--format", "json")
	var shown map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &shown))
	require.Equal(t, created["extension"], shown["extension"])

	// list in all three formats, with filters.
	out = run("binding", "list", "--merchant", "m1")
	require.Equal(t, 3, strings.Count(out, "\n"), out)
	out = run("binding", "list", "--order", "o-3", "--format", "csv")
	recs, err = csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2)
	out = run("binding", "list", "--format", "json")
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list, 2)
	// A merchant that does not exist is an error, not an empty list (README "The same by HTTP").
	_, _, err = runCLI(t, "binding", "list", "--merchant", "nobody", "--format", "json")
	require.ErrorContains(t, err, "merchant nobody: not found")

	// release and renew.
	out = run("binding", "release", id, "--format", "json")
	require.Contains(t, out, `"status": "released"`)
	out = run("binding", "renew", id, "--format", "json")
	var renewed map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &renewed))
	require.Equal(t, "o-1", renewed["order"])
	require.NotEqual(t, id, renewed["id"])

	// CDRs and the bill, even when empty.
	require.Contains(t, run("cdr", "list", "--merchant", "m1", "--from", "2026-01-01", "--to", "2027-01-01T00:00:00Z"), "DISPOSITION")
	require.JSONEq(t, "[]", run("cdr", "list", "--format", "json"))
	out = run("bill", "--merchant", "m1", "--month", "2026-11", "--format", "json")
	var bill map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &bill))
	require.Equal(t, "CNY", bill["currency"])

	// The consignee's digits appear in no output at all.
	require.NotRegexp(t, regexp.MustCompile(`1\D?38\D?0013\D?8000`), all.String())
	require.NotContains(t, all.String(), "8613800138000")
}

func TestErrorsAreOneLine(t *testing.T) {
	useTempStore(t)
	mustRun(t, "merchant", "add", "m1")
	tests := map[string]struct {
		args []string
		want string
	}{
		"unknown merchant":   {[]string{"account", "add", "m9", "bob", "--password", "long enough"}, "not found"},
		"no password":        {[]string{"account", "add", "m1", "bob"}, "--password"},
		"bad number":         {[]string{"number", "add", "123"}, "invalid host number"},
		"missing flags":      {[]string{"binding", "create", "--merchant", "m1"}, "required flag"},
		"bad consignee":      {[]string{"binding", "create", "--merchant", "m1", "--order", "o", "--consignee", "555", "--order-status", "shipped"}, "invalid consignee"},
		"unknown binding":    {[]string{"binding", "show", "b_0000000000000000"}, "not found"},
		"bad format":         {[]string{"binding", "list", "--format", "xml"}, "--format"},
		"bad time":           {[]string{"cdr", "list", "--from", "yesterday"}, "--from"},
		"bad month":          {[]string{"bill", "--merchant", "m1", "--month", "11/2026"}, "YYYY-MM"},
		"unknown command":    {[]string{"bindng"}, "did you mean binding?"},
		"missing arg":        {[]string{"binding", "show"}, "accepts 1 arg"},
		"pool empty":         {[]string{"binding", "create", "--merchant", "m1", "--order", "o", "--consignee", consignee, "--order-status", "shipped"}, "pool exhausted"},
		"missing config":     {[]string{"config", "show", "--config", "/nonexistent/vnum.yaml"}, "vnum.yaml"},
		"duplicate merchant": {[]string{"merchant", "add", "m1"}, "already exists"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, errOut, err := runCLI(t, tc.args...)
			require.Error(t, err)
			require.Empty(t, out)
			require.True(t, strings.HasPrefix(errOut, "vnum: "), errOut)
			require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
			require.Contains(t, errOut, tc.want)
		})
	}
}

func TestConfigShow(t *testing.T) {
	useTempStore(t)
	t.Setenv("VNUM_ADMIN_TOKEN", "super-secret-token")
	file := filepath.Join(t.TempDir(), "vnum.yaml")
	require.NoError(t, os.WriteFile(file, []byte("trunk:\n  username: u\n  password: hunter2hunter2\nivr:\n  language: en\n"), 0o600))

	// --config works after the subcommand too.
	out := mustRun(t, "config", "show", "--config", file)
	require.Contains(t, out, "language: en")
	require.Contains(t, out, "rtp_ports: 20000-29999")
	require.NotContains(t, out, "hunter2")
	require.NotContains(t, out, "super-secret")
	require.Equal(t, 2, strings.Count(out, "'***'"), out)

	out = mustRun(t, "--config", file, "config", "show", "--format", "json")
	var m map[string]map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &m))
	require.Equal(t, "***", m["trunk"]["password"])
	require.Equal(t, "en", m["ivr"]["language"])

	t.Setenv("VNUM_IVR_ANSWER", "x")
	_, errOut, err := runCLI(t, "config", "show")
	require.Error(t, err)
	require.Equal(t, "vnum: ivr.answer: must be answer or early, got \"x\"\n", errOut)
}

func TestPasswordStdin(t *testing.T) {
	useTempStore(t)
	mustRun(t, "merchant", "add", "m1")
	root := newRootCmd()
	root.SetIn(strings.NewReader("from stdin pw\n"))
	var out, errb bytes.Buffer
	root.SetArgs([]string{"account", "add", "m1", "carol", "--password-stdin"})
	root.SetOut(&out)
	root.SetErr(&errb)
	require.NoError(t, root.ExecuteContext(context.Background()), errb.String())
	require.Contains(t, out.String(), "account carol added")
	require.NotContains(t, out.String(), "stdin pw")
}
