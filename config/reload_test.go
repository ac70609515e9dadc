package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestChangedAndKeep: a reload sees which keys changed, tells those a
// running server takes from those that need a restart, and keeps the
// latter as they run.
func TestChangedAndKeep(t *testing.T) {
	old, next := Default(), Default()
	require.Empty(t, old.Changed(next))
	next.Log.Level = "debug"
	next.Security.InviteRate = 5
	next.Trunk.Outbound = "sip:192.0.2.1:5060"
	next.Media.Timeout = 90 * time.Second
	next.SIP.Listen = []string{"udp://127.0.0.1:5070"}
	changed := old.Changed(next)
	require.Equal(t, []string{"log.level", "media.timeout", "security.invite_rate", "sip.listen", "trunk.outbound"}, changed)
	var restart []string
	for _, k := range changed {
		if !AtRunTime(k) {
			restart = append(restart, k)
		}
	}
	require.Equal(t, []string{"media.timeout", "sip.listen"}, restart)
	next.Keep(old, restart)
	require.Equal(t, 60*time.Second, next.Media.Timeout)
	require.Equal(t, DefaultSIPListen(), next.SIP.Listen)
	require.Equal(t, []string{"log.level", "security.invite_rate", "trunk.outbound"}, old.Changed(next))
	for _, k := range Keys() {
		require.True(t, field(old, k).IsValid(), k)
	}
}
