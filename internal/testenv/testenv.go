// Package testenv reads the switches of vnum's own tests and scripts from
// the environment.
//
// They live under the prefix VNUMTEST_ (VNUMTEST_REQUIRE_SIPP=1), because
// vnum refuses a VNUM_ variable that names no configuration key, as it
// refuses an unknown key in its file. CI systems outside this repository
// may still set the older VNUM_REQUIRE_<NAME> switches: Require honours
// them too, and UnsetLegacy takes them out of the environment of a test
// binary whose tests load vnum's configuration, so that they do not refuse
// to start.
package testenv

import (
	"os"
	"strings"
)

// Prefix is the prefix of the test suite's own variables.
const Prefix = "VNUMTEST_"

// legacyRequirePrefix is the older prefix of the REQUIRE switches, under
// the one vnum keeps for configuration keys.
const legacyRequirePrefix = "VNUM_REQUIRE_"

// legacy holds the VNUM_REQUIRE_ switches the process started with, read
// before a TestMain calls UnsetLegacy, keyed by NAME.
var legacy = readLegacy(os.Environ())

func readLegacy(environ []string) map[string]string {
	out := map[string]string{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if rest, ok := strings.CutPrefix(name, legacyRequirePrefix); ok {
			out[rest] = value
		}
	}
	return out
}

// RequireVar returns the variable that makes a missing tool called name a
// failure instead of a skip: VNUMTEST_REQUIRE_ + name.
func RequireVar(name string) string {
	return Prefix + "REQUIRE_" + name
}

// Require reports whether the tests must have the tool called name (SIPP,
// POSTGRES, KAMAILIO) rather than skip without it: VNUMTEST_REQUIRE_<name>
// or, from older CI set-ups, VNUM_REQUIRE_<name> is "1".
func Require(name string) bool {
	if os.Getenv(RequireVar(name)) == "1" || os.Getenv(legacyRequirePrefix+name) == "1" {
		return true
	}
	return legacy[name] == "1"
}

// UnsetLegacy removes every VNUM_REQUIRE_ variable from the process's
// environment, after this package has read them. A TestMain calls it in a
// package whose tests load vnum's configuration in process, or start vnum
// with the test binary's environment (children inherit it as it is then).
func UnsetLegacy() {
	for name := range legacy {
		// Unsetenv fails only on a name the platform cannot hold, which
		// the environment just gave us.
		_ = os.Unsetenv(legacyRequirePrefix + name)
	}
}
