package testenv

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRequire: either name of the switch requires the tool, "1" only; the
// older name still counts after UnsetLegacy took it out of the environment.
func TestRequire(t *testing.T) {
	const name = "TESTENVTOOL"
	require.False(t, Require(name))
	t.Setenv(RequireVar(name), "1")
	require.True(t, Require(name))
	t.Setenv(RequireVar(name), "0")
	require.False(t, Require(name))

	t.Setenv(legacyRequirePrefix+name, "1")
	require.True(t, Require(name))

	saved := legacy
	t.Cleanup(func() { legacy = saved })
	legacy = readLegacy(os.Environ())
	require.Equal(t, "1", legacy[name])
	UnsetLegacy()
	_, set := os.LookupEnv(legacyRequirePrefix + name)
	require.False(t, set, "UnsetLegacy leaves %s%s", legacyRequirePrefix, name)
	require.True(t, Require(name), "read before it was unset")
}
