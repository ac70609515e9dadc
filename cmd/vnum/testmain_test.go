package main

import (
	"testing"

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
