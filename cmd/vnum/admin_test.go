package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
)

// runCLIStdin runs a fresh command tree in process with stdin as its
// standard input.
func runCLIStdin(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cfg = nil
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// accountOf reads a login from the store the CLI uses.
func accountOf(t *testing.T, dsn, user string) (string, error) {
	t.Helper()
	s, err := binding.Open(context.Background(), binding.DriverSQLite, dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	a, err := s.Account(context.Background(), user)
	return a.HA1MD5, err
}

// TestDayTwoCLI lists merchants and accounts in every format, changes a
// password both ways, removes an account and a host number; every refusal
// is one line. No output carries a password, a digest or the consignee.
func TestDayTwoCLI(t *testing.T) {
	dsn := useTempStore(t)
	var all strings.Builder
	run := func(args ...string) string {
		t.Helper()
		out := mustRun(t, args...)
		all.WriteString(out)
		return out
	}
	refuse := func(args []string, want string) {
		t.Helper()
		requireOneLineError(t, args, want)
	}

	run("merchant", "add", "m1", "--name", "Shop One")
	run("merchant", "add", "m2", "--name", "Shop Two")
	run("account", "add", "m1", "bob", "--password", "correct horse")
	run("account", "add", "m1", "alice", "--password", "correct horse")
	run("account", "add", "m2", "carol", "--password", "correct horse")
	run("number", "add", "17000000001", "17000000002")
	var b struct{ Host string }
	require.NoError(t, json.Unmarshal([]byte(run("binding", "create", "--merchant", "m1", "--order", "o-1",
		"--consignee", consignee, "--order-status", "shipped", "--format", "json")), &b))

	// Merchants, in the three formats.
	out := run("merchant", "list")
	require.Regexp(t, `(?m)^ID\s+NAME\s+CREATED_AT\s+ACCOUNTS\s+ACTIVE_BINDINGS$`, out)
	require.Regexp(t, `(?m)^m1\s+Shop One\s+\S+Z\s+2\s+1$`, out)
	require.Regexp(t, `(?m)^m2\s+Shop Two\s+\S+Z\s+1\s+0$`, out)
	recs, err := csv.NewReader(strings.NewReader(run("merchant", "list", "--format", "csv"))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"id", "name", "created_at", "accounts", "active_bindings"}, recs[0])
	require.Len(t, recs, 3)
	var ms []map[string]any
	require.NoError(t, json.Unmarshal([]byte(run("merchant", "list", "--format", "json")), &ms))
	require.Len(t, ms, 2)
	require.EqualValues(t, 2, ms[0]["accounts"])
	require.EqualValues(t, 1, ms[0]["active_bindings"])
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(run("merchant", "show", "m2", "--format", "json")), &m))
	require.Equal(t, ms[1], m, "show is one object")
	require.Regexp(t, `(?m)^m1\s+Shop One`, run("merchant", "show", "m1"))
	refuse([]string{"merchant", "show", "m9"}, "merchant m9: not found")

	// Accounts.
	out = run("account", "list", "m1")
	require.Regexp(t, `(?m)^USER\s+MERCHANT\s+CREATED_AT\s+REGISTERED$`, out)
	require.Regexp(t, `(?s)alice\s+m1\s+\S+Z\s+false\s+bob\s+m1`, out)
	require.NotContains(t, out, "carol")
	recs, err = csv.NewReader(strings.NewReader(run("account", "list", "m1", "--format", "csv"))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"user", "merchant", "created_at", "registered"}, recs[0])
	require.Len(t, recs, 3)
	var as []map[string]any
	require.NoError(t, json.Unmarshal([]byte(run("account", "list", "m2", "--format", "json")), &as))
	require.Len(t, as, 1)
	require.Equal(t, "carol", as[0]["user"])
	run("merchant", "add", "m3")
	require.JSONEq(t, "[]", run("account", "list", "m3", "--format", "json"), "a merchant without logins")
	refuse([]string{"account", "list", "m9"}, "merchant m9: not found")
	refuse([]string{"account", "add", "m2", "alice", "--password", "another one"},
		"account alice: already exists: merchant m1 has it, and SIP user names are shared by all merchants")

	// A new password, given on the command line or on standard input.
	out = run("account", "password", "m1", "alice", "--password", "battery staple")
	require.Equal(t, "password of account alice (merchant m1) changed; its softphone must register again with the new one\n", out)
	ha1, err := accountOf(t, dsn, "alice")
	require.NoError(t, err)
	require.Equal(t, binding.HA1("MD5", "alice", binding.Realm, "battery staple"), ha1)
	out, errOut, err := runCLIStdin(t, "from stdin pw\n", "account", "password", "m1", "bob", "--password-stdin")
	require.NoError(t, err, errOut)
	require.Contains(t, out, "password of account bob (merchant m1) changed")
	all.WriteString(out)
	ha1, err = accountOf(t, dsn, "bob")
	require.NoError(t, err)
	require.Equal(t, binding.HA1("MD5", "bob", binding.Realm, "from stdin pw"), ha1)
	_, _, err = runCLIStdin(t, "", "account", "password", "m1", "bob", "--password-stdin")
	require.ErrorContains(t, err, "--password-stdin: no password on standard input")
	_, _, err = runCLIStdin(t, "x y z w v\n", "account", "password", "m1", "bob", "--password-stdin", "--password", "a b c d e")
	require.ErrorContains(t, err, "give --password or --password-stdin, not both")
	refuse([]string{"account", "password", "m1", "alice"}, "--password or --password-stdin is required")
	refuse([]string{"account", "password", "m1", "alice", "--password", "short"}, "invalid password: want at least 8 characters")
	refuse([]string{"account", "password", "m1", "carol", "--password", "long enough"}, "account carol of merchant m1: not found")
	refuse([]string{"account", "password", "m9", "alice", "--password", "long enough"}, "merchant m9: not found")
	ha1, err = accountOf(t, dsn, "carol")
	require.NoError(t, err)
	require.Equal(t, binding.HA1("MD5", "carol", binding.Realm, "correct horse"), ha1, "refusals changed nothing")

	// Removing an account.
	require.Equal(t, "account bob of merchant m1 removed\n", run("account", "remove", "m1", "bob"))
	_, err = accountOf(t, dsn, "bob")
	require.ErrorIs(t, err, binding.ErrNotFound)
	refuse([]string{"account", "remove", "m1", "bob"}, "account bob of merchant m1: not found")
	refuse([]string{"account", "remove", "m1", "carol"}, "account carol of merchant m1: not found")
	require.NotContains(t, run("account", "list", "m1"), "bob")

	// Retiring host numbers: not while a binding holds one.
	other := map[bool]string{true: "17000000002", false: "17000000001"}[b.Host == "17000000001"]
	refuse([]string{"number", "remove", b.Host}, "number "+b.Host+": still in use: 1 active binding(s) and 0 in quarantine; as they stand it is free from ")
	require.Equal(t, "number "+other+" removed from the pool\n", run("number", "remove", "+86"+other))
	out = run("number", "list")
	require.Contains(t, out, b.Host)
	require.NotContains(t, out, other)
	refuse([]string{"number", "remove", other}, "number "+other+": not found")
	refuse([]string{"number", "remove", "170"}, "invalid host number")

	// Nothing printed carries a secret or the consignee.
	for _, secret := range []string{"horse", "battery", "stdin pw",
		binding.HA1("MD5", "alice", binding.Realm, "battery staple"), binding.HA1("SHA-256", "alice", binding.Realm, "battery staple"),
		binding.HA1("MD5", "carol", binding.Realm, "correct horse")} {
		require.NotContains(t, all.String(), secret)
	}
	require.NotRegexp(t, regexp.MustCompile(`1\D?38\D?0013\D?8000`), all.String())
}

// TestBindingInputRefusals: the refusals of a binding's input are one line
// that says what is wrong: an unknown order status lists the valid ones, a
// duration is quoted as written, and a consignee must be a real number
// that is not one of vnum's own.
func TestBindingInputRefusals(t *testing.T) {
	useTempStore(t)
	mustRun(t, "merchant", "add", "m1")
	mustRun(t, "number", "add", "17000000001")
	create := func(consignee, status string, more ...string) []string {
		return append([]string{"binding", "create", "--merchant", "m1", "--order", "o-1", "--consignee", consignee,
			"--order-status", status}, more...)
	}
	tests := map[string]struct {
		args []string
		want string
	}{
		"unknown status":   {create(consignee, "shipd"), `vnum: invalid order status "shipd": unknown; want shipped, delivered or after_sale`},
		"unpaid":           {create(consignee, "unpaid"), "vnum: order not shipped: status unpaid"},
		"paid":             {create(consignee, "paid"), "vnum: order not shipped: status paid"},
		"ttl over a year":  {create(consignee, "shipped", "--ttl", "9000h"), "vnum: invalid ttl 9000h: must lie between 1h and 8760h (365 days)"},
		"ttl in minutes":   {create(consignee, "shipped", "--ttl", "59m"), "vnum: invalid ttl 59m: must lie between 1h and 8760h (365 days)"},
		"ttl without unit": {create(consignee, "shipped", "--ttl", "720"), `vnum: invalid ttl "720": want a duration with a unit between 1h and 8760h, such as 720h`},
		"host number":      {create("17000000001", "shipped"), "vnum: invalid consignee: it is one of vnum's own host numbers; bind the consignee's own phone"},
		"host number, +86": {create("+8617000000001", "shipped"), "vnum: invalid consignee: it is one of vnum's own host numbers"},
		"not a number":     {create("23800138000", "shipped"), "vnum: invalid consignee: want an 11-digit mobile number (13800138000), a fixed line with its area code (010 6234 5678) or E.164 (+8613800138000)"},
		"local from 1":     {create("01012345678", "shipped"), "vnum: invalid consignee: a +86 number must be a mobile number"},
		"renew ttl":        {[]string{"binding", "renew", "b_0000000000000000", "--ttl", "9000h"}, "vnum: invalid ttl 9000h: must lie between 1h and 8760h"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, errOut, err := runCLI(t, tc.args...)
			require.Error(t, err)
			require.Empty(t, out)
			require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
			require.True(t, strings.HasPrefix(errOut, tc.want), "%s: %s", name, errOut)
			require.NotContains(t, errOut, "0m0s")
		})
	}
	require.JSONEq(t, "[]", mustRun(t, "binding", "list", "--format", "json"), "nothing stored")

	// A fixed line with its area code is a consignee.
	out := mustRun(t, append(create("010 6234 5678", "shipped"), "--ttl", "90m", "--format", "json")...)
	require.NotContains(t, out, "6234")
	var b map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &b))
	require.Equal(t, "active", b["status"])
}
