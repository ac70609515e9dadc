package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/pgtest"
	"github.com/vnum/vnum/internal/testenv"
)

// TestMain runs the tests with one PostgreSQL server for the binary. The
// tests load vnum's configuration in process, which refuses a VNUM_
// variable that names no key: the VNUM_REQUIRE_ switches an older CI
// set-up may still export are read, then taken out of the environment.
func TestMain(m *testing.M) {
	testenv.UnsetLegacy()
	pgtest.Main(m)
}

// TestNoLegacySwitches: whatever the CI exported, the commands these tests
// run, and the vnum processes they start, see no VNUM_REQUIRE_ variable.
func TestNoLegacySwitches(t *testing.T) {
	for _, kv := range os.Environ() {
		require.False(t, strings.HasPrefix(kv, "VNUM_REQUIRE_"), "%s is left in the environment", kv)
	}
}
