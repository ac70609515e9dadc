//go:build unix

package binding

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkWritable checks that this process may write the SQLite file and
// what SQLite keeps beside it: the file itself, its -wal and -shm files
// where they exist, and its directory, where SQLite creates and removes
// them (WAL mode writes them even to read). A refusal names the path, its
// owner and mode, and this process's user. What does not exist, or is not
// what it should be (a directory where the file should be), is left to
// SQLite's own error.
func checkWritable(file string) error {
	dir := filepath.Dir(file)
	if err := writable(dir, true); err != nil {
		return fmt.Errorf("%w (sqlite writes its -wal and -shm files beside %s)", err, file)
	}
	for _, p := range []string{file, file + "-wal", file + "-shm"} {
		if err := writable(p, false); err != nil {
			return err
		}
	}
	return nil
}

// writable checks one path that exists: a directory (isDir) must be
// writable and searchable, a file writable. It returns nil for a path
// that does not exist or is of the other kind.
func writable(path string, isDir bool) error {
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() != isDir {
		return nil
	}
	mode := uint32(unix.W_OK)
	if isDir {
		mode |= unix.X_OK
	}
	err = unix.Faccessat(unix.AT_FDCWD, path, mode, unix.AT_EACCESS)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%s is on a read-only file system", path)
	case errors.Is(err, fs.ErrPermission):
		return &notWritableError{path: path, info: fi}
	}
	return nil // anything else is left to SQLite, which says it better
}

// notWritableError names a path this process may not write, with its
// owner and mode and the process's user: "/var/lib/vnum/vnum.db is owned
// by postgres:postgres mode 0640 and not writable by vnum (uid 998)".
type notWritableError struct {
	path string
	info fs.FileInfo
}

func (e *notWritableError) Error() string {
	owner, group := "?", "?"
	if st, ok := e.info.Sys().(*syscall.Stat_t); ok {
		owner, group = userName(int(st.Uid)), groupName(int(st.Gid))
	}
	what := ""
	if e.info.IsDir() {
		what = "directory "
	}
	uid := os.Geteuid()
	return fmt.Sprintf("%s%s is owned by %s:%s mode %04o and not writable by %s (uid %d)",
		what, e.path, owner, group, e.info.Mode().Perm(), userName(uid), uid)
}

// Unwrap makes the error match fs.ErrPermission.
func (e *notWritableError) Unwrap() error { return fs.ErrPermission }

// userName is the name of uid, or the number where it has none.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// groupName is the name of gid, or the number where it has none.
func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}
