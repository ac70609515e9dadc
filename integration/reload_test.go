package integration

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitLogged waits until the serve process's log holds needle, count
// times, and fails the test with the log's tail after within.
func (e *env) waitLogged(needle string, count int, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		data, err := os.ReadFile(e.serve.logPath)
		require.NoError(e.t, err)
		if strings.Count(string(data), needle) >= count {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the log does not hold %q %d times within %s:\n%s", needle, count, within, e.serve.logTail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSIGHUPReloads: SIGHUP makes the built binary re-read its
// configuration file: a key it takes at run time (log.level) applies at
// once, a key that needs a restart (media.timeout) is named in one line
// and kept, a file that does not validate is refused in one line with the
// running configuration kept, and no SIGHUP ever stops vnum. SIGTERM then
// stops it cleanly.
func TestSIGHUPReloads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "log:\n  level: info\n")
	e.startServe()
	hup := func() {
		t.Helper()
		require.NoError(t, e.serve.cmd.Process.Signal(syscall.SIGHUP))
	}

	// Nothing changed.
	hup()
	e.waitLogged(`"msg":"reload: nothing to change"`, 1, 10*time.Second)

	// A key taken at run time, and one that needs a restart.
	e.setYAML("level: info", "level: debug")
	e.setYAML("timeout: 20s", "timeout: 25s")
	hup()
	e.waitLogged(`"msg":"configuration reloaded","changed":["log.level"]`, 1, 10*time.Second)
	e.waitLogged(`"msg":"reload: these keys take effect only after a restart; their running values are kept","keys":["media.timeout"]`, 1, 10*time.Second)
	e.waitSIP(5 * time.Second)
	e.waitLogged(`"level":"DEBUG"`, 1, 10*time.Second) // debug lines now (sipgo's, for the OPTIONS)

	// A file that does not validate: refused, one line, vnum goes on.
	e.setYAML("level: debug", "level: loud")
	hup()
	e.waitLogged(`"msg":"reload refused: the running configuration is kept"`, 1, 10*time.Second)
	require.Contains(t, e.serve.logTail(5), "log.level")
	e.waitSIP(5 * time.Second)
	require.False(t, e.serve.exited(), "SIGHUP never stops vnum")

	require.NoError(t, e.serve.cmd.Process.Signal(syscall.SIGTERM))
	code, err := e.serve.wait(20 * time.Second)
	require.NoError(t, err)
	require.Zero(t, code, e.serve.logTail(20))
}
