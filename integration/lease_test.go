package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	store "github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/internal/pgtest"
	"github.com/vnum/vnum/sip/sipua"
)

// exec runs vnum with the env's config in dir (the env's own when "")
// with extra environment variables, to its end, and returns what it
// printed and its exit status.
func (e *env) exec(dir string, extraEnv []string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	if dir == "" {
		dir = e.dir
	}
	if slices.Contains(args, "serve") {
		// The ports the test holds for this serve are its to bind.
		letGo(e.sipPort, e.adminPort)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"--config", e.config}, args...)...)
	cmd.Env = append(cleanEnviron(), extraEnv...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.t.Fatalf("vnum %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// requireRefused checks a refusal as the operator meets it: exit status
// 1, nothing on stdout, one line "vnum: ..." on stderr containing want.
func requireRefused(t *testing.T, stdout, stderr string, code int, want string) {
	t.Helper()
	require.Equal(t, 1, code, "stdout: %s\nstderr: %s", stdout, stderr)
	require.Empty(t, stdout)
	require.True(t, strings.HasPrefix(stderr, "vnum: "), stderr)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %s", stderr)
	require.Contains(t, stderr, want)
}

// useStore points the env at store driver and dsn instead of its own
// SQLite file.
func (e *env) useStore(driver, dsn string) {
	e.t.Helper()
	e.setYAML(fmt.Sprintf("  driver: sqlite\n  dsn: %s\n", filepath.Join(e.dir, "vnum.db")),
		fmt.Sprintf("  driver: %s\n  dsn: %q\n", driver, dsn))
}

// requireNoStore checks that dir holds no SQLite store file.
func requireNoStore(t *testing.T, dir string) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "*.db*"))
	require.NoError(t, err)
	require.Empty(t, matches, "a store was left in %s", dir)
}

// TestSecondServeRefused: two `vnum serve` with one node.id on one store
// (started by hand beside the service, or two nodes on one host that both
// take the host name as their id). The second refuses to start with one
// line naming the node and the process that serves it; the first goes on
// serving, and its call in progress keeps its open record, untouched (the
// second used to close it as interrupted, with no talk and no fee). Once
// the first stops cleanly, its lease is released and the second starts at
// once. On one SQLite file and on PostgreSQL.
func TestSecondServeRefused(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			first := newEnv(t, "")
			carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
			require.NoError(t, err)
			t.Cleanup(carrier.Close)
			first.setYAML(fmt.Sprintf("sip:127.0.0.1:%d;", first.carrierPort), fmt.Sprintf("sip:127.0.0.1:%d;", carrier.Addr.Port()))
			first.setYAML("  timeout: 20s", "  timeout: 120s") // no RTP flows: the media timeout must not end the call
			dsn := filepath.Join(first.dir, "vnum.db")
			if driver == "postgres" {
				dsn = pgtest.Start(t).NewDatabase(t)
				first.useStore(driver, dsn)
			}
			b := first.seed()
			first.startServe()

			phone, err := sipua.NewSoftphone(account, password, nil)
			require.NoError(t, err)
			t.Cleanup(phone.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			d, err := phone.Call(ctx, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(first.sipPort)), hostNumber)
			require.NoError(t, err)
			to, err := sipua.MediaAddr(d.InviteResponse.Body())
			require.NoError(t, err)
			require.NoError(t, sipua.SendDigits(phone.RTP, to, 101, b.Extension))
			_, err = carrier.NextSession(20 * time.Second)
			require.NoError(t, err, "vnum never bridged the call")
			first.waitCallState("bridged", 10*time.Second)
			before, raw := first.cdrs()
			require.Len(t, before, 1, raw)
			require.False(t, before[0].ended(), raw)

			// The second node: its own ports, the same store, the same
			// (default) node.id.
			second := newEnv(t, "")
			second.useStore(driver, dsn)
			stdout, stderr, code := second.exec("", nil, "serve")
			host, err := os.Hostname()
			require.NoError(t, err)
			requireRefused(t, stdout, stderr, code, fmt.Sprintf("node.id %q is in use: vnum pid %d on host %s holds its lease",
				host, first.serve.cmd.Process.Pid, host))
			t.Logf("the second serve: %s", strings.TrimSpace(stderr))
			require.NotContains(t, stderr, consignee)

			// The first goes on; its call's record is still open.
			first.waitCallState("bridged", 10*time.Second)
			after, raw := first.cdrs()
			require.Len(t, after, 1, raw)
			require.Equal(t, before[0].ID, after[0].ID)
			require.False(t, after[0].ended(), "the refused serve closed the first one's call: %s", raw)
			require.NotEqual(t, "interrupted", after[0].Disposition, raw)

			require.NoError(t, d.Bye(ctx))
			rows := first.waitCDRs(1, 15*time.Second)
			requireAnswered(t, rows[0], b)
			require.Equal(t, "caller", rows[0].HangupBy)

			// A clean stop releases the lease: the second starts now.
			first.serve.stop(20 * time.Second)
			require.NoError(t, first.serve.exitErr(), "the first serve's SIGTERM stop")
			second.startServe()
			log, err := os.ReadFile(second.serve.logPath)
			require.NoError(t, err)
			require.Contains(t, string(log), `"previous_lease":"released"`, "the second sees a clean stop before it")
		})
	}
}

// TestServeThatCannotStartWritesNothing: a serve whose admin port or SIP
// port is taken refuses with one line naming the key, and leaves no store
// behind (it used to create an empty one, and close the node's open
// calls, before it found the port taken).
func TestServeThatCannotStartWritesNothing(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		occupy func(e *env) (net.Addr, func() error, error)
		want   func(e *env) string
	}{
		"admin port in use": {
			occupy: func(e *env) (net.Addr, func() error, error) {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", e.adminPort))
				if err != nil {
					return nil, nil, err
				}
				return l.Addr(), l.Close, nil
			},
			want: func(*env) string { return "admin.listen: listen tcp 127.0.0.1:" },
		},
		"sip udp port in use": {
			occupy: func(e *env) (net.Addr, func() error, error) {
				c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", e.sipPort))
				if err != nil {
					return nil, nil, err
				}
				return c.LocalAddr(), c.Close, nil
			},
			want: func(e *env) string { return fmt.Sprintf(`sip.listen "udp://127.0.0.1:%d"`, e.sipPort) },
		},
		"sip tcp port in use": {
			occupy: func(e *env) (net.Addr, func() error, error) {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", e.sipPort))
				if err != nil {
					return nil, nil, err
				}
				return l.Addr(), l.Close, nil
			},
			want: func(e *env) string { return fmt.Sprintf(`sip.listen "tcp://127.0.0.1:%d"`, e.sipPort) },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "")
			letGo(e.sipPort, e.adminPort) // the test binds one of them itself
			addr, release, err := tc.occupy(e)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, release()) })
			stdout, stderr, code := e.exec("", nil, "serve")
			requireRefused(t, stdout, stderr, code, tc.want(e))
			require.Contains(t, stderr, "address already in use", "the port %s is named as taken", addr)
			requireNoStore(t, e.dir)
		})
	}
}

// TestReadingCommandCreatesNoStore: a command that only reads refuses a
// store that does not exist with one line naming its path and store.dsn,
// and creates nothing; the first command that adds something creates the
// store and says so.
func TestReadingCommandCreatesNoStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	file := filepath.Join(e.dir, "vnum.db")
	for _, args := range [][]string{{"cdr", "list"}, {"number", "list"}, {"bill", "--merchant", "m1", "--month", "2026-11"}} {
		stdout, stderr, code := e.exec("", nil, args...)
		requireRefused(t, stdout, stderr, code, "store.dsn: no vnum store at "+file+" yet")
		requireNoStore(t, e.dir)
	}
	_, stderr, code := e.exec("", nil, "merchant", "add", merchantID)
	require.Zero(t, code, stderr)
	require.Equal(t, "vnum: created a new, empty store "+file+" (store.dsn; set it with --config FILE or VNUM_STORE_DSN)\n", stderr)
	_, stderr, code = e.exec("", nil, "cdr", "list")
	require.Zero(t, code, stderr)
	require.Empty(t, stderr)
}

// TestRelativeStoreDSN: a relative store.dsn in a configuration file is
// taken from the file's directory, whatever directory vnum runs in (a
// service manager's, an operator's shell); VNUM_STORE_DSN, like any path
// typed in a shell, is taken from the working directory.
func TestRelativeStoreDSN(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.setYAML("  dsn: "+filepath.Join(e.dir, "vnum.db")+"\n", "  dsn: data.db\n")
	elsewhere := t.TempDir()
	_, stderr, code := e.exec(elsewhere, nil, "merchant", "add", merchantID)
	require.Zero(t, code, stderr)
	require.Contains(t, stderr, "created a new, empty store "+filepath.Join(e.dir, "data.db")+" ")
	_, err := os.Stat(filepath.Join(e.dir, "data.db"))
	require.NoError(t, err, "the store is beside its configuration file")
	requireNoStore(t, elsewhere)
	out, stderr, code := e.exec(elsewhere, nil, "config", "show")
	require.Zero(t, code, stderr)
	require.Contains(t, out, "dsn: "+filepath.Join(e.dir, "data.db"))

	_, stderr, code = e.exec(elsewhere, []string{"VNUM_STORE_DSN=shell.db"}, "merchant", "add", merchantID)
	require.Zero(t, code, stderr)
	require.Contains(t, stderr, "created a new, empty store "+filepath.Join(elsewhere, "shell.db")+" ")
}

// TestLeaseOfAnotherMachine: a node's lease held by a process on another
// machine (a node moved to a new host, both with the same node.id) keeps
// vnum serve from starting while it is renewed, and the record of that
// process's call in progress is left alone. When that process dies, its
// lease runs out LeaseTTL after its last renewal; the next serve takes it
// and closes the dead process's call as interrupted.
func TestLeaseOfAnotherMachine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "node:\n  id: vnum-moved\n")
	ctx := context.Background()
	clock := time.Now()
	s, err := store.Open(ctx, store.DriverSQLite, filepath.Join(e.dir, "vnum.db"), store.WithNode("vnum-moved"),
		store.WithClock(func() time.Time { return clock }))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	elsewhere := store.Holder{Host: "old-host", PID: 4242, Machine: "another machine"}
	lease, err := s.TakeLease(ctx, elsewhere, store.LeaseOptions{})
	require.NoError(t, err)
	require.NoError(t, s.AddMerchant(ctx, merchantID, "Shop"))
	call := &callrec.Record{CallID: "on-the-old-host", Merchant: merchantID, Host: hostNumber, Extension: "1234",
		Direction: callrec.DirectionToConsignee, Caller: account, StartedAt: clock.Add(-time.Minute)}
	require.NoError(t, s.StartCDR(ctx, call))

	stdout, stderr, code := e.exec("", nil, "serve")
	requireRefused(t, stdout, stderr, code, `node.id "vnum-moved" is in use: vnum pid 4242 on host old-host holds its lease`)
	got, err := s.GetCDR(ctx, call.ID)
	require.NoError(t, err)
	require.True(t, got.EndedAt.IsZero(), "a refused serve closed another process's call")

	// The old host dies: its last renewal was a lease's lifetime ago.
	clock = clock.Add(-store.LeaseTTL - time.Second)
	require.NoError(t, lease.Renew(ctx))
	e.startServe()
	rows, raw := e.cdrs()
	require.Len(t, rows, 1, raw)
	require.Equal(t, "interrupted", rows[0].Disposition, raw)
	require.Equal(t, "system", rows[0].HangupBy, raw)
	require.True(t, rows[0].ended(), raw)
	log, err := os.ReadFile(e.serve.logPath)
	require.NoError(t, err)
	require.Contains(t, string(log), `"previous_host":"old-host"`)
	require.Contains(t, string(log), `"interrupted_calls_closed":1`)
}

// TestStoreNotWritable: a store file, or its directory, that the user
// running vnum may not write is named in one line with its owner and
// mode, and the user. Run as root, the test runs vnum as nobody (root may
// write anything); run as another user, it takes write permission away
// from that user.
func TestStoreNotWritable(t *testing.T) {
	t.Parallel()
	// A directory every user can reach, holding the binary, the config
	// and the store's directory.
	top, err := os.MkdirTemp("", "vnum-perm-")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, os.RemoveAll(top)) })
	require.NoError(t, os.Chmod(top, 0o755))
	bin := filepath.Join(top, "vnum")
	data, err := os.ReadFile(vnumBinary(t))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	dir := filepath.Join(top, "lib")
	require.NoError(t, os.Mkdir(dir, 0o755))
	file := filepath.Join(dir, "vnum.db")
	config := filepath.Join(top, "vnum.yaml")
	require.NoError(t, os.WriteFile(config, []byte("store:\n  dsn: lib/vnum.db\n"), 0o644))
	run := func(cred *syscall.Credential, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--config", config}, args...)...)
		cmd.Env = cleanEnviron()
		cmd.Dir = top
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("vnum %s: %v", strings.Join(args, " "), err)
		}
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}
	_, stderr, code := run(nil, "merchant", "add", merchantID)
	require.Zero(t, code, stderr)

	var as *syscall.Credential // the user vnum runs as: this one, or nobody
	me, err := user.Current()
	require.NoError(t, err)
	who := fmt.Sprintf("%s (uid %s)", me.Username, me.Uid)
	owner := me.Username + ":" + groupOf(t, me.Gid)
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skipf("skipping: no user nobody to run vnum as: %v", err)
		}
		uid, gid := atoi(t, nobody.Uid), atoi(t, nobody.Gid)
		as = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		who = fmt.Sprintf("nobody (uid %d)", uid)
	} else {
		// This user owns everything here: take its write permission away.
		require.NoError(t, os.Chmod(dir, 0o555))
		require.NoError(t, os.Chmod(file, 0o444))
		t.Cleanup(func() { require.NoError(t, os.Chmod(dir, 0o755)) })
	}

	stdout, stderr, code := run(as, "number", "list")
	requireRefused(t, stdout, stderr, code, fmt.Sprintf("vnum: store.dsn: directory %s is owned by %s mode 0%o and not writable by %s "+
		"(sqlite writes its -wal and -shm files beside %s)", dir, owner, dirMode(t, dir), who, file))

	require.NoError(t, os.Chmod(dir, 0o777))
	stdout, stderr, code = run(as, "number", "list")
	requireRefused(t, stdout, stderr, code, fmt.Sprintf("vnum: store.dsn: %s is owned by %s mode 0%o and not writable by %s\n",
		file, owner, dirMode(t, file), who))

	require.NoError(t, os.Chmod(file, 0o666))
	out, stderr, code := run(as, "number", "list")
	require.Zero(t, code, "a store this user may write opens: %s", stderr)
	require.Contains(t, out, "HOST")
}

// dirMode is the permission bits of path.
func dirMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Mode().Perm()
}

// groupOf is the name of the group gid.
func groupOf(t *testing.T, gid string) string {
	t.Helper()
	g, err := user.LookupGroupId(gid)
	require.NoError(t, err)
	return g.Name
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
