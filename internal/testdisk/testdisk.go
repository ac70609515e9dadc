// Package testdisk gives a test a small file system of its own that it
// can fill: a tmpfs mounted on a temporary directory. A full disk is a
// fault tests meet as it is, not as an error a fake returns.
package testdisk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vnum/vnum/internal/testenv"
)

// requireName is the tool name of testenv.Require for tests that need
// root: VNUMTEST_REQUIRE_ROOT=1 makes a missing privilege a failure.
const requireName = "ROOT"

// Mount mounts a tmpfs of size bytes on a new directory and returns the
// directory; the test's cleanup unmounts it. Mounting needs root (CI runs
// the tests as root): without it the test is skipped, or fails when
// VNUMTEST_REQUIRE_ROOT=1.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		missing(t, "mounting a tmpfs needs root on Linux (running as uid %d on %s)", os.Geteuid(), runtime.GOOS)
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		missing(t, "mount -t tmpfs on %s: %v", dir, err)
	}
	// Registered after TempDir's own cleanup, so it runs before it; and
	// after any file the test opens there is closed, when the test
	// registers that close later still.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			// Something still holds a file there: detach it anyway.
			if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil {
				t.Errorf("unmount %s: %v, then %v", dir, err, derr)
			}
		}
	})
	return dir
}

// missing skips the test, or fails it when VNUMTEST_REQUIRE_ROOT=1.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if testenv.Require(requireName) {
		t.Fatalf("%s (%s=1 makes this a failure)", msg, testenv.RequireVar(requireName))
	}
	t.Skipf("skipping: %s (%s=1 turns this skip into a failure)", msg, testenv.RequireVar(requireName))
}

// Fill writes a file into dir until its file system has no space left
// and returns a function that removes the file again, freeing the space.
func Fill(t testing.TB, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("filling %s: %v", dir, err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	cerr := f.Close()
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling %s: want ENOSPC, got %v", dir, err)
	}
	if cerr != nil && !errors.Is(cerr, unix.ENOSPC) {
		t.Fatalf("filling %s: %v", dir, cerr)
	}
	return func() {
		t.Helper()
		if err := os.Remove(path); err != nil {
			t.Fatalf("freeing %s: %v", dir, err)
		}
	}
}
