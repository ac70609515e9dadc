package config

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEventsSection: events.* load from the file and the environment
// (retries as a list, or comma-separated), print as the example file
// writes them, are refused in one line naming the key when wrong, and are
// taken anew by a running server.
func TestEventsSection(t *testing.T) {
	c, err := Load("", WithEnviron(nil))
	require.NoError(t, err)
	require.Equal(t, Events{Timeout: 5 * time.Second, Retries: DefaultEventsRetries()}, c.Events)
	require.Equal(t, []string{"10s", "60s", "5m", "30m", "2h", "6h"}, c.Masked()["events"].(map[string]any)["retries"])

	c, err = Load(writeFile(t, "events:\n  timeout: 2s\n  retries: [1s, 90s]\n  allow_private: true\n"), WithEnviron(nil))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, Events{Timeout: 2 * time.Second, Retries: []time.Duration{time.Second, 90 * time.Second}, AllowPrivate: true}, c.Events)

	c, err = Load("", WithEnviron([]string{"VNUM_EVENTS_RETRIES=10s, 2m"}))
	require.NoError(t, err)
	require.Equal(t, []time.Duration{10 * time.Second, 2 * time.Minute}, c.Events.Retries)

	c, err = Load(writeFile(t, "events:\n  retries: []\n"), WithEnviron(nil))
	require.NoError(t, err)
	require.NoError(t, c.Validate(), "no retries: one attempt")
	require.Empty(t, c.Events.Retries)

	for yaml, want := range map[string]string{
		"events:\n  retries: [10, 1m]\n":   "events.retries: got 10, want a list of durations with a unit",
		"events:\n  retries: [10s, ten]\n": `events.retries: got "ten", want a list of durations with a unit`,
		"events:\n  retries: 10s\n":        "", // one wait, written without brackets, is a list of one
		"events:\n  timeout: 5\n":          "events.timeout: got 5, want a duration with a unit",
		"events:\n  allow_private: yes\n":  `events.allow_private: got "yes", want true or false`,
	} {
		_, err := Load(writeFile(t, yaml), WithEnviron(nil))
		if want == "" {
			require.NoError(t, err, yaml)
			continue
		}
		require.ErrorContains(t, err, want, yaml)
		require.NotContains(t, err.Error(), "\n")
	}
	_, err = Load("", WithEnviron([]string{"VNUM_EVENTS_RETRIES=10,20"}))
	require.ErrorContains(t, err, "VNUM_EVENTS_RETRIES: events.retries: got \"10\", want a list of durations with a unit")

	for name, ev := range map[string]Events{
		"events.timeout: must be a positive duration": {Timeout: 0},
		"events.timeout: got 2m, want at most 60s":    {Timeout: 2 * time.Minute},
		"events.retries: got 0s":                      {Timeout: time.Second, Retries: []time.Duration{0}},
		"events.retries: got 72h":                     {Timeout: time.Second, Retries: []time.Duration{72 * time.Hour}},
		"events.retries: lists 21 waits":              {Timeout: time.Second, Retries: slices.Repeat([]time.Duration{time.Minute}, 21)},
	} {
		c := Default()
		c.Events = ev
		err := c.Validate()
		require.ErrorContains(t, err, name)
		require.Len(t, strings.Split(err.Error(), "\n"), 1, name)
	}

	for _, key := range []string{"events.timeout", "events.retries", "events.allow_private"} {
		require.True(t, AtRunTime(key), key)
	}
}
