package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
)

// requireOneLineError checks the shape of every refusal (README "Running vnum"): non-zero
// exit, nothing on stdout, one "vnum: ..." line on stderr.
func requireOneLineError(t *testing.T, args []string, want string) {
	t.Helper()
	out, errOut, err := runCLI(t, args...)
	require.Error(t, err, "vnum %s succeeded: %s", strings.Join(args, " "), out)
	require.Empty(t, out)
	require.True(t, strings.HasPrefix(errOut, "vnum: "), errOut)
	require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
	require.Contains(t, errOut, want)
}

// TestEveryCommandRefusesBadUsage walks the whole command tree: a parent
// command given an unknown subcommand or none, and any command given an
// unknown flag or the wrong number of arguments, exits non-zero with one
// line and touches no store (cobra printed the help and exited 0 for
// `vnum binding delete ID`).
func TestEveryCommandRefusesBadUsage(t *testing.T) {
	dsn := useTempStore(t)
	var walk func(cmd *cobra.Command, path []string)
	parents, leaves := 0, 0
	walk = func(cmd *cobra.Command, path []string) {
		if cmd.Name() == "help" {
			return
		}
		name := strings.Join(append([]string{"vnum"}, path...), " ")
		with := func(more ...string) []string { return append(append([]string{}, path...), more...) }
		// A refusal names the command (all but the root) and its usage.
		whose := strings.Join(path, " ") + ": "
		if len(path) == 0 {
			whose = ""
		}
		t.Run(name+" --no-such-flag", func(t *testing.T) {
			requireOneLineError(t, with("--no-such-flag"), whose+"unknown flag: --no-such-flag")
		})
		if cmd.HasSubCommands() {
			parents++
			t.Run(name+" delete ID", func(t *testing.T) {
				requireOneLineError(t, with("delete", "b_0000000000000000"), `unknown command "delete" for "`+name+`"`)
			})
			if len(path) > 0 {
				t.Run(name+" alone", func(t *testing.T) {
					requireOneLineError(t, path, "needs a subcommand")
				})
			}
			for _, sub := range cmd.Commands() {
				walk(sub, with(sub.Name()))
			}
			return
		}
		leaves++
		if cmd.Args != nil && cmd.Args(cmd, nil) != nil {
			t.Run(name+" without arguments", func(t *testing.T) {
				requireOneLineError(t, path, whose)
			})
		}
		extra := []string{"a1", "a2", "a3", "a4", "a5"}
		if cmd.Args != nil && cmd.Args(cmd, extra) != nil {
			t.Run(name+" with extra arguments", func(t *testing.T) {
				requireOneLineError(t, with(extra...), whose)
			})
		}
	}
	walk(newRootCmd(), nil)
	require.GreaterOrEqual(t, parents, 7, "vnum, merchant, account, number, binding, cdr, config")
	require.GreaterOrEqual(t, leaves, 15)
	_, err := os.Stat(dsn)
	require.ErrorIs(t, err, os.ErrNotExist, "a refused command created the store")

	requireOneLineError(t, []string{"merchant", "lst"}, `unknown command "lst" for "vnum merchant" (did you mean list?)`)
	requireOneLineError(t, []string{"merchant", "remove", "m1"}, `unknown command "remove" for "vnum merchant" (want add, announcement, list, protection, show, webhook)`)
	requireOneLineError(t, []string{"binding", "relase", "b_1"}, "did you mean release?")
	requireOneLineError(t, nil, `"vnum" needs a subcommand`)
	requireOneLineError(t, []string{"bill", "--merchant", "m1"}, `bill: required flag(s) "month" not set (usage: vnum bill`)
	requireOneLineError(t, []string{"help", "bindng"}, `unknown command "bindng" for "vnum"`)
	requireOneLineError(t, []string{"help", "binding", "delete"}, `unknown help topic "delete" for "vnum binding"`)
	require.Contains(t, mustRun(t, "help", "binding", "release"), "End a binding now")
	require.Contains(t, mustRun(t, "binding", "--help"), "Available Commands")
}

// TestStoreOpenFailureNamesPathAndKey: a store that cannot be opened is one
// line naming store.dsn and the path.
func TestStoreOpenFailureNamesPathAndKey(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "plain-file")
	require.NoError(t, os.WriteFile(notDir, nil, 0o600))
	dsn := filepath.Join(notDir, "vnum.db")
	t.Setenv("VNUM_STORE_DSN", dsn)
	requireOneLineError(t, []string{"number", "list"}, `store.dsn: cannot open sqlite file "`+dsn+`"`)
	requireOneLineError(t, []string{"merchant", "add", "m1"}, dsn)

	garbage := filepath.Join(t.TempDir(), "notes.txt")
	require.NoError(t, os.WriteFile(garbage, []byte(strings.Repeat("not a database\n", 100)), 0o600))
	t.Setenv("VNUM_STORE_DSN", garbage)
	requireOneLineError(t, []string{"number", "list"}, `store.dsn: cannot open sqlite file "`+garbage+`": file is not a database`)
}

// TestNewStoreIsAnnounced: a command that creates a new, empty store says
// so on stderr, naming it; the next command on the same store says nothing.
func TestNewStoreIsAnnounced(t *testing.T) {
	dsn := useTempStore(t)
	out, errOut, err := runCLI(t, "merchant", "add", "m1")
	require.NoError(t, err, errOut)
	require.Contains(t, out, "merchant m1 added")
	require.Equal(t, "vnum: created a new, empty store "+dsn+" (store.dsn; set it with --config FILE or VNUM_STORE_DSN)\n", errOut)

	out, errOut, err = runCLI(t, "number", "list")
	require.NoError(t, err, errOut)
	require.Contains(t, out, "HOST")
	require.Empty(t, errOut)
}

// TestMissingStoreIsNotCreated: a command that only reads, or that needs
// records a new store cannot have (an account needs its merchant, a
// release its binding), refuses a store that does not exist with one line
// naming the path and store.dsn, and creates nothing; a command that can
// start a store from nothing but is refused for its input leaves nothing
// behind either.
func TestMissingStoreIsNotCreated(t *testing.T) {
	dsn := useTempStore(t)
	for _, args := range [][]string{
		{"number", "list"},
		{"binding", "list"},
		{"binding", "show", "b_0000000000000000"},
		{"binding", "release", "b_0000000000000000"},
		{"binding", "create", "--merchant", "m1", "--order", "o1", "--consignee", consignee, "--order-status", "shipped"},
		{"account", "add", "m1", "alice", "--password", "long enough"},
		{"cdr", "list"},
		{"bill", "--merchant", "m1", "--month", "2026-11"},
		{"merchant", "add", "bad id"},
		{"number", "add", "123"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			want := "store.dsn: no vnum store at " + dsn + " yet"
			if args[1] == "add" && (args[0] == "merchant" || args[0] == "number") {
				want = "invalid"
			}
			requireOneLineError(t, args, want)
			entries, err := os.ReadDir(filepath.Dir(dsn))
			require.NoError(t, err)
			require.Empty(t, entries, "vnum %s left a store behind", strings.Join(args, " "))
		})
	}
	// config show reads no store at all.
	mustRun(t, "config", "show")
	_, err := os.Stat(dsn)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestVersion(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "1.4.2", "0123abc"
	want := "vnum 1.4.2 (commit 0123abc, " + runtime.Version() + ")\n"
	// Neither needs a valid configuration.
	t.Setenv("VNUM_BINDING_TTL", "720")
	out, errOut, err := runCLI(t, "version")
	require.NoError(t, err, errOut)
	require.Equal(t, want, out)
	out, errOut, err = runCLI(t, "--version")
	require.NoError(t, err, errOut)
	require.Equal(t, want, out)

	version, commit = "", ""
	out = mustRun(t, "version")
	require.Regexp(t, `^vnum \S+ \(commit \S+, go`, out)
}

// TestConfigErrorsThroughCLI: config mistakes reach the operator as one
// line naming the key, the value and what is wanted, for every command.
func TestConfigErrorsThroughCLI(t *testing.T) {
	useTempStore(t)
	write := func(body string) string {
		f := filepath.Join(t.TempDir(), "vnum.yaml")
		require.NoError(t, os.WriteFile(f, []byte(body), 0o600))
		return f
	}
	ttl := write("binding:\n  ttl: 720\n")
	for _, cmd := range [][]string{{"config", "show"}, {"serve"}, {"binding", "list"}} {
		requireOneLineError(t, append(cmd, "--config", ttl), "binding.ttl: got 720, want a duration with a unit, e.g. 720h")
	}
	requireOneLineError(t, []string{"serve", "--config", write("sipp: {}\n")}, "sipp: unknown key")
	requireOneLineError(t, []string{"serve", "--config", write("media:\n  timout: 60s\n")}, "media.timout: unknown key")
	t.Setenv("VNUM_MEDIA_TIMEOUT", "60")
	requireOneLineError(t, []string{"serve"}, `VNUM_MEDIA_TIMEOUT: media.timeout: got "60", want a duration with a unit, e.g. 60s`)
}

// TestUnknownVariableRefused: a VNUM_ variable that names no key stops
// every command that reads the configuration, in one line naming it and
// the key it was probably meant for; its value is never printed.
func TestUnknownVariableRefused(t *testing.T) {
	useTempStore(t)
	t.Setenv("VNUM_MEDIA_TIMOUT", "30s")
	for _, cmd := range [][]string{
		{"config", "show"}, {"serve"}, {"number", "list"}, {"merchant", "add", "m1"},
		{"binding", "list"}, {"cdr", "list"}, {"bill", "--merchant", "m1", "--month", "2026-11"}, {"demo"},
	} {
		requireOneLineError(t, cmd, "vnum: config: environment: VNUM_MEDIA_TIMOUT is not a configuration key (did you mean VNUM_MEDIA_TIMEOUT?)")
	}
	t.Setenv("VNUM_ADMIN_TOKN", "s3cret-token")
	out, errOut, err := runCLI(t, "config", "show")
	require.Error(t, err)
	require.Empty(t, out)
	require.Equal(t, "vnum: config: environment: VNUM_ADMIN_TOKN is not a configuration key (did you mean VNUM_ADMIN_TOKEN?); "+
		"environment: VNUM_MEDIA_TIMOUT is not a configuration key (did you mean VNUM_MEDIA_TIMEOUT?)\n", errOut)

	// What an operator asks for when reporting a broken set-up still works.
	require.Contains(t, mustRun(t, "version"), "vnum ")
}

// TestConfigShowMasksDSNPassword: the password inside a DSN or a URL is
// masked; durations print as vnum.example.yaml writes them.
func TestConfigShowMasksDSNPassword(t *testing.T) {
	t.Setenv("VNUM_STORE_DRIVER", "postgres")
	t.Setenv("VNUM_STORE_DSN", "postgres://vnum:Tr0ub4dor@db.internal:5432/vnum?sslmode=disable")
	t.Setenv("VNUM_TRUNK_OUTBOUND", "sip:acct:carrierpw@203.0.113.10:5060;transport=udp")
	out := mustRun(t, "config", "show")
	require.NotContains(t, out, "Tr0ub4dor")
	require.NotContains(t, out, "carrierpw")
	require.Contains(t, out, "dsn: postgres://vnum:***@db.internal:5432/vnum?sslmode=disable")
	require.Contains(t, out, "outbound: sip:acct:***@203.0.113.10:5060;transport=udp")
	for _, line := range []string{"quarantine: 2160h\n", "ttl: 720h\n", "block_for: 15m\n", "timeout: 60s\n", "max_duration: 2h\n"} {
		require.Contains(t, out, line)
	}
	require.NotContains(t, out, "0m0s")
	require.Contains(t, out, "\nlog:\n  level: info\n")
}

// TestServeRefusesMediaIP: an address this host cannot bind is refused at
// start, naming media.ip and the value (it used to start and then refuse
// every call as "no free rtp ports"); 0.0.0.0 is refused by Validate.
func TestServeRefusesMediaIP(t *testing.T) {
	useTempStore(t)
	t.Setenv("VNUM_SIP_LISTEN", "udp://127.0.0.1:0")
	t.Setenv("VNUM_ADMIN_LISTEN", "127.0.0.1:0")
	t.Setenv("VNUM_TRUNK_OUTBOUND", "sip:127.0.0.1:9;transport=udp")
	t.Setenv("VNUM_MEDIA_IP", "192.0.2.1") // TEST-NET-1 (RFC 5737): never this host's
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errb strings.Builder
	cfg = nil
	err := execute(ctx, newRootCmd(), []string{"serve"}, &out, &errb)
	require.Error(t, err, "serve started on a media.ip it cannot bind")
	require.Contains(t, errb.String(), "vnum: media.ip: cannot bind 192.0.2.1")
	require.Equal(t, 1, strings.Count(errb.String(), "\n"), errb.String())

	t.Setenv("VNUM_MEDIA_IP", "0.0.0.0")
	requireOneLineError(t, []string{"serve"}, "media.ip: got 0.0.0.0")
}

// TestDemoRefusesNonsenseFlags: `vnum demo --talk -1s` relayed no RTP and
// still printed "demo OK".
func TestDemoRefusesNonsenseFlags(t *testing.T) {
	requireOneLineError(t, []string{"demo", "--talk", "-1s"}, "--talk -1s: want a duration from 1s to 10m")
	requireOneLineError(t, []string{"demo", "--talk", "0s"}, "--talk 0s")
	requireOneLineError(t, []string{"demo", "--talk", "2h"}, "--talk 2h: want a duration from 1s to 10m")
	requireOneLineError(t, []string{"demo", "--lang", "fr"}, `--lang "fr": want zh or en`)
}

// TestCheckMedia: the demo passes a call only when RTP crossed both ways.
func TestCheckMedia(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		sent, heardByB, heardByA int
		ok                       bool
	}{
		"both ways":         {50, 50, 49, true},
		"nothing sent":      {0, 0, 0, false},
		"one way only":      {50, 50, 0, false},
		"other way only":    {50, 0, 50, false},
		"mostly lost":       {50, 10, 50, false},
		"a few lost":        {50, 25, 25, true},
		"one packet each":   {1, 1, 1, true},
		"one sent none got": {1, 0, 1, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := checkMedia(tc.sent, tc.heardByB, tc.heardByA)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, "media did not flow both ways")
			}
		})
	}
}

// TestCDRTableFits120Columns: `vnum cdr list` prints a table an operator
// can read on a 120-column terminal, with realistic (and some long)
// values; csv keeps every column.
func TestCDRTableFits120Columns(t *testing.T) {
	dsn := useTempStore(t)
	s, err := binding.Open(context.Background(), "sqlite", dsn)
	require.NoError(t, err)
	rates, err := binding.ParseRates("0.02", "0.00018")
	require.NoError(t, err)
	start := time.Date(2026, 11, 15, 9, 30, 0, 0, time.UTC)
	rows := []struct {
		merchant, ext string
		dir           callrec.Direction
		caller        string
		disp          callrec.Disposition
		hangup        callrec.HangupBy
		talk          time.Duration
		status        int
	}{
		{"demo-shop", "1234", "to_consignee", "alice", "answered", "caller", 3*time.Minute + 7*time.Second, 200},
		{"jd-mall-shanghai-east", "12345678", "callback", "+8613700137000", "answered", "callee", 119 * time.Minute, 200},
		{"m1", "0042", "to_consignee", "13700137000", "invalid_extension", "system", 0, 404},
		{"tmall-flagship-store", "5678", "to_consignee", "courier-sf-express-0042", "no_answer", "system", 0, 480},
	}
	for i, r := range rows {
		c := &callrec.Record{CallID: "call-" + strings.Repeat("x", 30), Merchant: r.merchant, BindingID: "b_0123456789abcdef",
			Order: "order-2026-11-15-000123", Host: "17000000001", Extension: r.ext, Direction: r.dir, Caller: r.caller,
			StartedAt: start.Add(time.Duration(i) * time.Hour), Disposition: r.disp, HangupBy: r.hangup, SIPStatus: r.status}
		if r.talk > 0 {
			c.RingingAt = c.StartedAt.Add(5 * time.Second)
			c.AnsweredAt = c.StartedAt.Add(9 * time.Second)
		}
		require.NoError(t, s.StartCDR(context.Background(), c))
		c.EndedAt = c.StartedAt.Add(9*time.Second + r.talk)
		require.NoError(t, s.FinishCDR(context.Background(), c, rates))
	}
	require.NoError(t, s.Close())

	out := mustRun(t, "cdr", "list")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 1+len(rows))
	for _, l := range lines {
		require.LessOrEqual(t, utf8.RuneCountInString(l), 120, "too wide for a 120-column terminal: %q", l)
	}
	for _, col := range []string{"STARTED_AT", "MERCHANT", "HOST", "EXT", "CALLER", "DISPOSITION", "TALK", "FEE"} {
		require.Contains(t, lines[0], col)
	}
	require.Contains(t, out, "2026-11-15T09:30:00Z")
	require.Contains(t, out, "2.38000", "119 minutes of talk")
	require.Contains(t, out, "+8613700137000")
	require.Contains(t, out, "jd-mall-s…")

	recs, err := csv.NewReader(strings.NewReader(mustRun(t, "cdr", "list", "--format", "csv"))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, callrec.Columns(), recs[0])
	require.Len(t, recs, 1+len(rows))
	require.Contains(t, recs[2], "jd-mall-shanghai-east")
	require.Contains(t, recs[4], "courier-sf-express-0042")
}

// TestExampleConfigAccepted: the sample at the repository root passes every
// command's configuration check as it is.
func TestExampleConfigAccepted(t *testing.T) {
	useTempStore(t)
	out := mustRun(t, "config", "show", "--config", "../../vnum.example.yaml")
	require.Contains(t, out, "ttl: 720h")
}

// TestCDRCSVFormulaSafe: a caller a spreadsheet would run as a formula
// comes out of `vnum cdr list --format csv` quoted, and as it is in JSON.
func TestCDRCSVFormulaSafe(t *testing.T) {
	dsn := useTempStore(t)
	s, err := binding.Open(context.Background(), "sqlite", dsn)
	require.NoError(t, err)
	start := time.Date(2026, 11, 15, 9, 30, 0, 0, time.UTC)
	for i, caller := range []string{"=1+2*3", "@SUM(A1)", "-2+3"} {
		c := &callrec.Record{CallID: "call-" + strconv.Itoa(i), Merchant: "m1", Host: "17000000001", Extension: "1234",
			Direction: "to_consignee", Caller: caller, StartedAt: start.Add(time.Duration(i) * time.Minute)}
		require.NoError(t, s.StartCDR(context.Background(), c))
	}
	require.NoError(t, s.Close())

	recs, err := csv.NewReader(strings.NewReader(mustRun(t, "cdr", "list", "--format", "csv"))).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 4)
	callerCol := slices.Index(recs[0], "caller")
	require.GreaterOrEqual(t, callerCol, 0)
	var callers []string
	for _, rec := range recs[1:] {
		for _, cell := range rec {
			if cell != "" {
				require.False(t, strings.ContainsAny(cell[:1], "=+-@\t\r"), "cell %q starts a formula", cell)
			}
		}
		callers = append(callers, rec[callerCol])
	}
	require.ElementsMatch(t, []string{"'=1+2*3", "'@SUM(A1)", "'-2+3"}, callers)
	require.Contains(t, mustRun(t, "cdr", "list", "--format", "json"), `"caller": "=1+2*3"`)
}
