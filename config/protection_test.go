package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/protection"
)

// TestProtectionFile: the protection section as an operator writes it,
// announce unquoted as the sample shows it, reads into the platform's
// policy.
func TestProtectionFile(t *testing.T) {
	c, err := Load(writeFile(t, `
protection:
  timezone: America/New_York
  quiet_hours: 21:00-08:00
  calls_per_day: 3
  calls_per_binding: 20
  announce: off
  confirm_timeout: 8s
  block_key: "#9"
  after_close: 240h
`))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "off", c.Protection.Announce, "an unquoted off is the word, not false")
	p, err := c.Protection.Platform()
	require.NoError(t, err)
	require.Equal(t, "America/New_York", p.Location.String())
	require.Equal(t, "21:00-08:00", p.QuietHours.String())
	require.Equal(t, 3, p.CallsPerDay)
	require.Equal(t, 20, p.CallsPerBinding)
	require.Equal(t, protection.AnnounceOff, p.Announce)
	require.Equal(t, 8*time.Second, p.ConfirmTimeout)
	require.Equal(t, "#9", p.BlockKey)
	require.Equal(t, 240*time.Hour, p.AfterClose)

	for _, mode := range []string{"inform", "confirm"} {
		c, err := Load(writeFile(t, "protection:\n  announce: "+mode+"\n"))
		require.NoError(t, err)
		require.NoError(t, c.Validate())
		require.Equal(t, mode, c.Protection.Announce)
	}

	// The defaults protect nothing but the closed order's end and the
	// block key.
	d, err := Default().Protection.Platform()
	require.NoError(t, err)
	require.Equal(t, protection.Platform{Location: d.Location, Announce: protection.AnnounceOff,
		ConfirmTimeout: 10 * time.Second, BlockKey: "*9", AfterClose: 360 * time.Hour}, d)
	require.Equal(t, "Asia/Shanghai", d.Location.String())
	require.False(t, protection.Effective(d, protection.Own{}).Counting())
}

// TestProtectionRefusals: each bad value is refused in one line naming
// its key and the value.
func TestProtectionRefusals(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Protection)
		want   string
	}{
		"timezone":         {func(p *Protection) { p.Timezone = "Mars/Olympus" }, `protection.timezone: unknown time zone "Mars/Olympus"`},
		"no timezone":      {func(p *Protection) { p.Timezone = "" }, `protection.timezone: unknown time zone ""`},
		"window":           {func(p *Protection) { p.QuietHours = "9pm-8am" }, `protection.quiet_hours: got "9pm-8am", want HH:MM-HH:MM`},
		"window no end":    {func(p *Protection) { p.QuietHours = "21:00" }, `protection.quiet_hours: got "21:00"`},
		"window empty":     {func(p *Protection) { p.QuietHours = "08:00-08:00" }, `protection.quiet_hours: got "08:00-08:00"`},
		"calls per day":    {func(p *Protection) { p.CallsPerDay = -1 }, "protection.calls_per_day: must be 0 (no cap) or more, got -1"},
		"calls per bind":   {func(p *Protection) { p.CallsPerBinding = -2 }, "protection.calls_per_binding: must be 0 (no cap) or more, got -2"},
		"announce":         {func(p *Protection) { p.Announce = "loud" }, `protection.announce: must be off, inform or confirm, got "loud"`},
		"announce empty":   {func(p *Protection) { p.Announce = "" }, `protection.announce: must be off, inform or confirm, got ""`},
		"confirm timeout":  {func(p *Protection) { p.ConfirmTimeout = 0 }, "protection.confirm_timeout: must be a positive duration"},
		"block key letter": {func(p *Protection) { p.BlockKey = "*9a" }, `protection.block_key: got "*9a", want up to 4 of the keys 0-9, * and #`},
		"block key long":   {func(p *Protection) { p.BlockKey = "*9999" }, `protection.block_key: got "*9999"`},
		"after close":      {func(p *Protection) { p.AfterClose = 0 }, "protection.after_close: must be a positive duration"},
	} {
		t.Run(name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c.Protection)
			err := c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n", "one line")
			require.True(t, strings.HasPrefix(err.Error(), "protection."), err.Error())
		})
	}
	for _, ok := range []string{"", "*", "#", "9", "*9", "##", "*#90"} {
		c := Default()
		c.Protection.BlockKey = ok
		require.NoError(t, c.Validate(), ok)
	}
	// A bare number of seconds is a duration without a unit.
	_, err := Load(writeFile(t, "protection:\n  confirm_timeout: 10\n"))
	require.ErrorContains(t, err, "protection.confirm_timeout")
}

// TestProtectionAtRunTime: every protection key is taken anew by a
// running server.
func TestProtectionAtRunTime(t *testing.T) {
	n := 0
	for _, k := range Keys() {
		if strings.HasPrefix(k, "protection.") {
			n++
			require.True(t, AtRunTime(k), k)
		}
	}
	require.Equal(t, 8, n)
}
