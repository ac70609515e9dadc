// Package deploy holds what an operator installs besides the binary: the
// Debian package's parts (debian/), the Grafana dashboard (grafana/) and
// the Prometheus alert rules (prometheus/). Its tests install the package
// on the machine they run on and check the unit's hardening; the test
// that the dashboard and the rules name only series vnum exposes lives
// with the metrics, in cmd/vnum.
package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/testenv"
)

// TestDebInstall installs the package `make deb` builds with dpkg -i, runs
// the installed vnum as an operator would (version, config show, a store
// written by the service's user in the service's directory, serve as that
// user until SIGTERM), checks the
// unit with systemd-analyze verify where it is installed, and purges the
// package. It needs root and dpkg; elsewhere it skips, unless
// VNUMTEST_REQUIRE_DEB=1 (CI) makes that a failure. VNUMTEST_DEB names
// a package already built, instead of building one.
//
// The machine is left as it was found: the package is purged even when
// the test fails, and the vnum user and /var/lib/vnum, which a purge keeps
// on purpose, are removed when the test created them.
func TestDebInstall(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	switch {
	case err != nil:
		skipOrFail(t, "dpkg is not installed")
	case os.Geteuid() != 0:
		skipOrFail(t, "installing a package needs root")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "vnum").CombinedOutput(); err == nil &&
		strings.Contains(string(out), "installed") && !strings.Contains(string(out), "not-installed") {
		t.Fatalf("a vnum package is already installed here (%s): this test would replace and purge it", out)
	}

	deb := os.Getenv(testenv.Prefix + "DEB")
	if deb == "" {
		deb = buildDeb(t)
	}

	_, userErr := user.Lookup("vnum")
	hadUser := userErr == nil
	_, stateErr := os.Stat("/var/lib/vnum")
	hadState := stateErr == nil
	t.Cleanup(func() {
		// Purge whatever the test got to; a package not installed is a
		// no-op for dpkg.
		if out, err := exec.Command(dpkg, "--purge", "vnum").CombinedOutput(); err != nil {
			t.Errorf("cleanup: dpkg --purge vnum: %v\n%s", err, out)
		}
		if !hadState {
			if err := os.RemoveAll("/var/lib/vnum"); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if !hadUser {
			if out, err := exec.Command("userdel", "vnum").CombinedOutput(); err != nil {
				t.Errorf("cleanup: userdel vnum: %v\n%s", err, out)
			}
			// userdel takes the group with the user where login.defs says
			// so (USERGROUPS_ENAB); else it is left.
			if _, err := user.LookupGroup("vnum"); err == nil {
				if out, err := exec.Command("groupdel", "vnum").CombinedOutput(); err != nil {
					t.Errorf("cleanup: groupdel vnum: %v\n%s", err, out)
				}
			}
		}
	})

	run(t, dpkg, "-i", deb)

	// What the package put where.
	for path, mode := range map[string]os.FileMode{
		"/usr/bin/vnum":                        0o755,
		"/usr/lib/systemd/system/vnum.service": 0o644,
		"/etc/vnum/vnum.yaml":                  0o640,
		"/usr/share/man/man1/vnum.1.gz":        0o644,
		"/usr/share/man/man1/vnum-serve.1.gz":  0o644,
		"/usr/share/doc/vnum/copyright":        0o644,
		"/var/lib/vnum":                        os.ModeDir | 0o750,
	} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, mode, fi.Mode(), path)
	}
	require.Contains(t, run(t, "dpkg-query", "-W", "-f=${Conffiles}", "vnum"), "/etc/vnum/vnum.yaml")
	u, err := user.Lookup("vnum")
	require.NoError(t, err, "the package creates the user vnum")
	require.Contains(t, run(t, "getent", "passwd", "vnum"), ":/var/lib/vnum:/usr/sbin/nologin")
	require.Equal(t, "vnum:vnum", run(t, "stat", "-c", "%U:%G", "/var/lib/vnum"))
	require.Equal(t, "root:vnum", run(t, "stat", "-c", "%U:%G", "/etc/vnum/vnum.yaml"),
		"the configuration may hold the trunk's password: readable by root and vnum only")

	require.Regexp(t, `^vnum \S+ \(commit \S+, go1\.`, run(t, "/usr/bin/vnum", "version"))
	shown := run(t, "/usr/bin/vnum", "--config", "/etc/vnum/vnum.yaml", "config", "show")
	require.Contains(t, shown, "dsn: /var/lib/vnum/vnum.db", "the packaged configuration keeps the store where the service may write")
	require.Contains(t, shown, "spool: /var/lib/vnum", "... and the spool, whatever store.driver")

	// The service's user writes its store with the packaged configuration
	// (the CLI's way: runuser, as `sudo -u vnum vnum ...` would).
	run(t, "runuser", "-u", "vnum", "--", "/usr/bin/vnum", "--config", "/etc/vnum/vnum.yaml", "number", "add", "17000000001")
	require.Contains(t, run(t, "runuser", "-u", "vnum", "--", "/usr/bin/vnum", "--config", "/etc/vnum/vnum.yaml", "number", "list"), "17000000001")
	require.Equal(t, u.Username+":vnum", run(t, "stat", "-c", "%U:%G", "/var/lib/vnum/vnum.db"))

	serveAsVnum(t, u, unitCapabilities(t, "/usr/lib/systemd/system/vnum.service"))

	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		out, err := exec.Command(analyze, "verify", "/usr/lib/systemd/system/vnum.service").CombinedOutput()
		require.NoError(t, err, "systemd-analyze verify:\n%s", out)
		// Other units of the machine may draw remarks; vnum's may not.
		require.NotContains(t, string(out), "vnum.service", "systemd-analyze verify:\n%s", out)
	} else {
		t.Log("systemd-analyze is not installed: the unit is not verified")
	}

	run(t, dpkg, "--purge", "vnum")
	for _, path := range []string{"/usr/bin/vnum", "/usr/lib/systemd/system/vnum.service", "/etc/vnum", "/usr/share/man/man1/vnum.1.gz"} {
		_, err := os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "%s outlived dpkg --purge", path)
	}
	_, err = os.Stat("/var/lib/vnum/vnum.db")
	require.NoError(t, err, "a purge keeps the store: its call records are the operator's to delete")
}

// serveAsVnum runs the installed `vnum serve` as the user u (vnum) with
// the packaged configuration and the capabilities caps, as the unit does,
// but on ports of the kernel's choosing: it must serve (/healthz answers)
// on the store the CLI wrote, relay RTP in the kernel with no privilege
// but caps (media.kernel auto; where the kernel cannot, it says so, and
// VNUMTEST_REQUIRE_KERNEL_RELAY=1 makes that a failure), and stop on
// SIGTERM with status 0.
func serveAsVnum(t *testing.T, u *user.User, caps []uintptr) {
	t.Helper()
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	require.NoError(t, err)
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	require.NoError(t, err)
	cmd := exec.Command("/usr/bin/vnum", "--config", "/etc/vnum/vnum.yaml", "serve")
	cmd.Dir = "/var/lib/vnum"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "GOMEMLIMIT=1GiB",
		"VNUM_SIP_LISTEN=udp://127.0.0.1:0,tcp://127.0.0.1:0", "VNUM_ADMIN_LISTEN=127.0.0.1:0",
		"VNUM_MEDIA_KERNEL=auto", "VNUM_NODE_ID=deb-test"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		AmbientCaps: caps,
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var exitErr error
	exited := make(chan struct{})
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// A test that failed half-way does not leave it running.
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	// The start line names the admin listener.
	admin := make(chan string, 1)
	var logs bytes.Buffer
	kernel := false // written before admin is sent
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Admin string }
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch line.Msg {
			case "rtp relayed in the kernel":
				kernel = true
			case "vnum serving":
				admin <- line.Admin
			}
		}
		close(admin)
	}()
	var addr string
	select {
	case a, ok := <-admin:
		// Closed: the log is complete, and says why.
		require.True(t, ok, "vnum serve stopped before serving:\n%s", logs.String())
		addr = a
	case <-time.After(30 * time.Second):
		require.FailNow(t, "vnum serve did not start within 30 s")
	}
	if !kernel {
		if testenv.Require("KERNEL_RELAY") {
			t.Errorf("the unit's capabilities do not let vnum relay RTP in the kernel (%s=1)", testenv.RequireVar("KERNEL_RELAY"))
		} else {
			t.Log("vnum relays RTP in user space here: the unit's capabilities are not checked against the kernel relay")
		}
	}
	res, err := http.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusOK, res.StatusCode)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-exited:
		require.NoError(t, exitErr, "vnum serve on SIGTERM")
	case <-time.After(60 * time.Second):
		require.FailNow(t, "vnum serve did not stop within 60 s of SIGTERM")
	}
}

// capabilityNumbers are the capabilities the unit may give, by name
// (linux/capability.h).
var capabilityNumbers = map[string]uintptr{
	"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_PERFMON": 38, "CAP_BPF": 39,
}

// unitCapabilities returns the unit's AmbientCapabilities.
func unitCapabilities(t *testing.T, path string) []uintptr {
	t.Helper()
	var caps []uintptr
	for _, name := range strings.Fields(readUnit(t, path)["AmbientCapabilities"]) {
		c, ok := capabilityNumbers[name]
		require.True(t, ok, "%s: unknown capability %s", path, name)
		caps = append(caps, c)
	}
	require.NotEmpty(t, caps)
	return caps
}

// TestUnitHardening: the unit runs vnum as its own user with the
// hardening options, and gives it no capability beyond those the kernel
// relay and a low port need. It reads the file, so it runs anywhere.
func TestUnitHardening(t *testing.T) {
	unit := readUnit(t, filepath.Join("debian", "vnum.service"))
	for key, want := range map[string]string{
		"User":                    "vnum",
		"ExecStart":               "/usr/bin/vnum --config /etc/vnum/vnum.yaml serve",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"ReadWritePaths":          "/var/lib/vnum",
		"StateDirectory":          "vnum",
		"CapabilityBoundingSet":   "CAP_BPF CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"AmbientCapabilities":     "CAP_BPF CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"LimitNOFILE":             "65536",
		"KillSignal":              "SIGTERM",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
	} {
		require.Equal(t, want, unit[key], "%s=", key)
	}
}

// readUnit returns a unit file's keys and values (the last of a key
// given twice), without comments.
func readUnit(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "%s: %q is not KEY=VALUE", path, line)
		out[k] = v
	}
	require.NoError(t, sc.Err())
	return out
}

// buildDeb runs `make deb` into a temporary folder and returns the
// package's path; the checkout's bin/ is left alone.
func buildDeb(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	tmp := t.TempDir()
	out := filepath.Join(tmp, "vnum.deb")
	cmd := exec.Command("make", "-C", root, "--no-print-directory", "deb")
	// An outer make (make test) must not hand this one its flags.
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "DEB_BUILD="+filepath.Join(tmp, "build"), "DEB_OUT="+out)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Run(), "make deb:\n%s", log.String())
	return out
}

// run runs a command and returns its output trimmed, failing the test on
// an error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return strings.TrimSpace(string(out))
}

// skipOrFail skips the test for why, or fails it when
// VNUMTEST_REQUIRE_DEB=1.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if testenv.Require("DEB") {
		t.Fatalf("%s, and %s=1 requires the package test", why, testenv.RequireVar("DEB"))
	}
	t.Skipf("%s: the package is not installed (%s=1 fails instead)", why, testenv.RequireVar("DEB"))
}
