package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMakeInstall: `make install` as root copies a current bin/vnum and
// needs no go, as `make && sudo make install` on a host whose root has no
// go on PATH; a missing or stale binary without go is one clear message.
// The binary goes to a temporary BIN, so the checkout's bin/ is left alone.
func TestMakeInstall(t *testing.T) {
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make is not installed")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "Makefile"))

	// noGo is a PATH of the few programs make and the Makefile use, go not
	// among them, wherever go is installed.
	noGo := t.TempDir()
	for _, prog := range []string{"sh", "make", "install", "find", "touch", "git", "ls"} {
		if p, err := exec.LookPath(prog); err == nil {
			require.NoError(t, os.Symlink(p, filepath.Join(noGo, prog)))
		}
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "vnum")
	dest := filepath.Join(tmp, "dest")
	run := func(path string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(makeBin, append([]string{"-C", root, "--no-print-directory", "BIN=" + bin}, args...)...)
		// An outer make (make test) must not hand this one its flags.
		var env []string
		for _, kv := range os.Environ() {
			name, _, _ := strings.Cut(kv, "=")
			switch name {
			case "PATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GO":
				continue
			}
			env = append(env, kv)
		}
		cmd.Env = append(env, "PATH="+path)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	out, err := run(os.Getenv("PATH"), "build", "GO="+goBin)
	require.NoError(t, err, out)

	out, err = run(noGo, "-n", "install", "DESTDIR="+dest)
	require.NoError(t, err, out)
	require.NotContains(t, out, "go build", "a current binary is not built again")

	out, err = run(noGo, "install", "DESTDIR="+dest)
	require.NoError(t, err, out)
	installed := filepath.Join(dest, "usr", "local", "bin", "vnum")
	fi, err := os.Stat(installed)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	want, err := os.ReadFile(bin)
	require.NoError(t, err)
	got, err := os.ReadFile(installed)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "the installed file is not bin/vnum")
	version, err := exec.Command(installed, "version").Output()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(version), "vnum "), "%s", version)

	// Older than its sources: rebuilt, which needs go.
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, os.Chtimes(bin, old, old))
	out, err = run(noGo, "-n", "install", "DESTDIR="+dest)
	require.NoError(t, err, out)
	require.Contains(t, out, "go build")
	out, err = run(noGo, "install", "DESTDIR="+dest)
	require.Error(t, err)
	require.Contains(t, out, "make: "+bin+" is missing or older than its sources, and go is not on PATH")

	require.NoError(t, os.Remove(bin))
	out, err = run(noGo, "install", "DESTDIR="+dest)
	require.Error(t, err)
	require.Contains(t, out, "make: "+bin+" is missing or older than its sources, and go is not on PATH")
}
