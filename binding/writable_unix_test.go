//go:build unix

package binding

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNotWritableMessage: the refusal of a store file this process may
// not write names the file, its owner and group, its mode and the
// process's user. (Whether a file is writable depends on who runs the
// test; integration's TestStoreNotWritable runs vnum as nobody.)
func TestNotWritableMessage(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "vnum.db")
	require.NoError(t, os.WriteFile(file, nil, 0o640))
	require.NoError(t, os.Chmod(file, 0o640))
	fi, err := os.Stat(file)
	require.NoError(t, err)
	me, err := user.Current()
	require.NoError(t, err)
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	require.NoError(t, err)
	err = &notWritableError{path: file, info: fi}
	require.EqualError(t, err, file+" is owned by "+me.Username+":"+g.Name+" mode 0640 and not writable by "+
		me.Username+" (uid "+strconv.Itoa(os.Geteuid())+")")

	dir, err := os.Stat(filepath.Dir(file))
	require.NoError(t, err)
	err = &notWritableError{path: filepath.Dir(file), info: dir}
	require.ErrorContains(t, err, "directory "+filepath.Dir(file)+" is owned by ")

	require.Equal(t, "4242424", userName(4242424), "a uid without a name is its number")
}
