package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Option changes how Load reads the configuration.
type Option func(*loadOptions)

// loadOptions are what Load reads besides the file.
type loadOptions struct {
	// environ returns the environment as "NAME=value" entries.
	environ func() []string
}

// WithEnviron makes Load read VNUM_ variables from environ ("NAME=value"
// entries, as os.Environ returns them) instead of the process's
// environment, so that a test can give it an environment of its own.
func WithEnviron(environ []string) Option {
	return func(o *loadOptions) {
		o.environ = func() []string { return environ }
	}
}

// envPrefix is what every variable that sets a key starts with.
const envPrefix = EnvPrefix + "_"

// envValues returns the value of every key set by a VNUM_ variable of
// environ, keyed by key path. It refuses what the file check refuses: a
// variable that names no key (a misspelt VNUM_MEDIA_TIMOUT must not pass
// silently, as media.timout in the file does not), and a value of the
// wrong kind for its key (VNUM_MEDIA_TIMEOUT=60, a duration without a
// unit). An empty value is checked but sets nothing, as viper reads it.
func envValues(environ []string) (map[string]string, error) {
	types := keyTypes()
	byName := make(map[string]string, len(types))
	for key := range types {
		byName[EnvName(key)] = key
	}
	// A later entry for a name wins, as in exec.Cmd's environment.
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) {
			vars[name] = value
		}
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	slices.Sort(names)

	var errs []error
	out := map[string]string{}
	for _, name := range names {
		key, ok := byName[name]
		if !ok {
			errs = append(errs, unknownEnv(name, byName))
			continue
		}
		if err := checkValue(key, types[key], vars[name]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if vars[name] != "" {
			out[key] = vars[name]
		}
	}
	return out, errors.Join(errs...)
}

// unknownEnv names a VNUM_ variable that sets no key, and the variables of
// the nearest keys when some are within two edits (case aside).
func unknownEnv(name string, known map[string]string) error {
	want := strings.ToUpper(name)
	best, near := 3, []string(nil)
	for k := range known {
		switch d := editDistance(want, k); {
		case d < best:
			best, near = d, []string{k}
		case d == best:
			near = append(near, k)
		}
	}
	hint := "VNUM_ variables set configuration keys only: VNUM_ and the key path, e.g. " +
		EnvName("store.dsn") + " for store.dsn; tools keep theirs under another prefix"
	if len(near) > 0 {
		slices.Sort(near)
		hint = "did you mean " + strings.Join(near, " or ") + "?"
	}
	return fmt.Errorf("environment: %s is not a configuration key (%s)", name, hint)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// defaultEnviron is the process's environment, what Load reads unless
// given WithEnviron.
var defaultEnviron = os.Environ
