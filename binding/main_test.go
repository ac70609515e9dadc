package binding

import (
	"os"
	"testing"

	"github.com/vnum/vnum/internal/pgtest"
)

// TestMain runs the tests with one PostgreSQL server for the binary (see
// internal/pgtest), or, started by TestRacingCreates, as one of its racing
// processes.
func TestMain(m *testing.M) {
	if os.Getenv(raceDriverEnv) != "" {
		os.Exit(raceChild())
	}
	pgtest.Main(m)
}
