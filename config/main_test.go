package config

import (
	"os"
	"testing"

	"github.com/vnum/vnum/internal/testenv"
)

// TestMain takes the VNUM_REQUIRE_ switches an older CI set-up may still
// export out of the environment: Load, which the tests call with the
// process's environment, would refuse them as unknown VNUM_ variables.
func TestMain(m *testing.M) {
	testenv.UnsetLegacy()
	os.Exit(m.Run())
}
