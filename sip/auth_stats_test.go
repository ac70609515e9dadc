package sip

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAuthStats: /metrics' counts of digest failures and blocks follow
// the blocking rule, and a block that ended no longer counts as one now.
func TestAuthStats(t *testing.T) {
	a, err := newAuthenticator(nil, nil, 3, time.Minute)
	require.NoError(t, err)
	now := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }

	require.False(t, a.fail("192.0.2.1"))
	require.False(t, a.fail("192.0.2.1"))
	require.False(t, a.fail("192.0.2.2"))
	require.True(t, a.fail("192.0.2.1"), "the third failure within a minute blocks")
	require.Equal(t, authStats{Failures: 4, Blocks: 1, Blocked: 1}, a.stats())

	now = now.Add(2 * time.Minute)
	require.Equal(t, authStats{Failures: 4, Blocks: 1, Blocked: 0}, a.stats(), "the block ended")
}
