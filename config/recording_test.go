package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRecordingSection: recording.* default to off, "recordings" beside
// the configuration file and 30 days; load from the file and the
// environment; a relative dir from the file is taken from the file's
// folder, one from the environment as it is; bad values are refused in
// one line naming the key; the section needs a restart.
func TestRecordingSection(t *testing.T) {
	c, err := Load("", WithEnviron(nil))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, Recording{Mode: RecordOff, Dir: "recordings", Keep: 720 * time.Hour}, c.Recording)
	require.Equal(t, map[string]any{"mode": "off", "dir": "recordings", "keep": "720h"}, c.Masked()["recording"])

	file := writeFile(t, "recording:\n  mode: merchant\n  dir: rec\n  keep: 48h\n")
	c, err = Load(file, WithEnviron(nil))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, Recording{Mode: RecordMerchant, Dir: filepath.Join(filepath.Dir(file), "rec"), Keep: 48 * time.Hour}, c.Recording)

	c, err = Load(file, WithEnviron([]string{"VNUM_RECORDING_MODE=on", "VNUM_RECORDING_DIR=here"}))
	require.NoError(t, err)
	require.Equal(t, RecordOn, c.Recording.Mode)
	require.Equal(t, "here", c.Recording.Dir, "a relative dir from the environment is the shell's")

	_, err = Load(writeFile(t, "recording:\n  keep: 30\n"), WithEnviron(nil))
	require.ErrorContains(t, err, "recording.keep: got 30, want a duration with a unit")
	_, err = Load(writeFile(t, "recording:\n  modes: on\n"), WithEnviron(nil))
	require.ErrorContains(t, err, "recording.modes")

	for want, r := range map[string]Recording{
		`recording.mode: must be off, on or merchant, got "always"`: {Mode: "always", Dir: "d", Keep: time.Hour},
		"recording.dir: must name a folder":                         {Mode: RecordOn, Keep: time.Hour},
		"recording.keep: got 30m, want at least 1h":                 {Mode: RecordOn, Dir: "d", Keep: 30 * time.Minute},
	} {
		c := Default()
		c.Recording = r
		err := c.Validate()
		require.ErrorContains(t, err, want)
		require.Len(t, strings.Split(err.Error(), "\n"), 1, want)
	}
	for _, key := range []string{"recording.mode", "recording.dir", "recording.keep"} {
		require.False(t, AtRunTime(key), key)
	}
}
