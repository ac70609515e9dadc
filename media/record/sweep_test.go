package record

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSweep: recordings last written before the keep window are deleted;
// newer ones, other files and folders are left; a missing folder is
// nothing to sweep; a keep that is not positive is refused.
func TestSweep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	keep := 720 * time.Hour
	files := map[string]time.Time{
		"old.wav":     now.Add(-keep - time.Minute),
		"new.wav":     now.Add(-keep + time.Minute),
		"old.txt":     now.Add(-2 * keep),
		"sub/old.wav": now.Add(-2 * keep),
	}
	for name, at := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("RIFF"), 0o600))
		require.NoError(t, os.Chtimes(p, at, at))
	}
	n, err := Sweep(dir, keep, now)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	for name := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if name == "old.wav" {
			require.ErrorIs(t, err, os.ErrNotExist, name)
		} else {
			require.NoError(t, err, name)
		}
	}

	n, err = Sweep(filepath.Join(dir, "none"), keep, now)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = Sweep(dir, 0, now)
	require.Error(t, err)
}
