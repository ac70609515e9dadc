package config

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestUnknownEnv: a VNUM_ variable that names no key is refused in one
// line naming it, with the nearest variables when one is close, and never
// with its value (it may be a secret).
func TestUnknownEnv(t *testing.T) {
	tests := map[string]struct {
		environ []string
		want    string
	}{
		"misspelt": {
			[]string{"VNUM_MEDIA_TIMOUT=30s"},
			"config: environment: VNUM_MEDIA_TIMOUT is not a configuration key (did you mean VNUM_MEDIA_TIMEOUT?)",
		},
		"lower case": {
			[]string{"VNUM_store_dsn=/var/lib/vnum/vnum.db"},
			"config: environment: VNUM_store_dsn is not a configuration key (did you mean VNUM_STORE_DSN?)",
		},
		"a secret's value is not shown": {
			[]string{"VNUM_ADMIN_TOKN=s3cret-token"},
			"config: environment: VNUM_ADMIN_TOKN is not a configuration key (did you mean VNUM_ADMIN_TOKEN?)",
		},
		"nothing near": {
			// A test tool's switch under vnum's prefix.
			[]string{"VNUM_REQUIRE_BARESIP=1"},
			"config: environment: VNUM_REQUIRE_BARESIP is not a configuration key (VNUM_ variables set configuration keys only: " +
				"VNUM_ and the key path, e.g. VNUM_STORE_DSN for store.dsn; tools keep theirs under another prefix)",
		},
		"a section": {
			[]string{"VNUM_MEDIA=x"},
			"config: environment: VNUM_MEDIA is not a configuration key (did you mean VNUM_MEDIA_IP?)",
		},
		"with a known one of the wrong kind": {
			[]string{"VNUM_IVR_ATTEMPTS=three", "VNUM_IVR_ATTEMPT=3"},
			"config: environment: VNUM_IVR_ATTEMPT is not a configuration key (did you mean VNUM_IVR_ATTEMPTS?)\n" +
				`VNUM_IVR_ATTEMPTS: ivr.attempts: got "three", want a whole number`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Load("", WithEnviron(tc.environ))
			require.EqualError(t, err, tc.want)
			require.NotContains(t, err.Error(), "s3cret")
		})
	}

	// The file's own check comes first, as before.
	_, err := Load(writeFile(t, "media:\n  timout: 60s\n"), WithEnviron([]string{"VNUM_MEDIA_TIMOUT=30s"}))
	require.ErrorContains(t, err, "media.timout: unknown key")
}

// TestEveryKeyHasAVariable: VNUM_ and each key path, upper-cased with _
// for ., is accepted and sets that key.
func TestEveryKeyHasAVariable(t *testing.T) {
	require.Equal(t, "VNUM_STORE_DSN", EnvName("store.dsn"))
	require.Equal(t, "VNUM_SECURITY_INVALID_EXTENSIONS", EnvName("security.invalid_extensions"))
	for key, typ := range keyTypes() {
		value := "x"
		switch {
		case typ == durationType:
			value = "90s"
		case typ == durationsType:
			value = "10s,1m"
		case typ.Kind() == reflect.Int:
			value = "3"
		case typ.Kind() == reflect.Bool:
			value = "true"
		}
		got, err := envValues([]string{EnvName(key) + "=" + value})
		require.NoError(t, err, key)
		require.Equal(t, map[string]string{key: value}, got, key)
	}
}

// TestWithEnviron: Load reads the environment it is given, not the
// process's; a later entry wins; other prefixes are not its business; an
// empty value sets nothing.
func TestWithEnviron(t *testing.T) {
	t.Setenv("VNUM_MEDIA_TIMEOUT", "90s")
	t.Setenv("VNUM_MEDIA_TIMOUT", "90s") // not read: the environment is given

	c, err := Load("", WithEnviron([]string{"VNUM_MEDIA_TIMEOUT=30s"}))
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, c.Media.Timeout)

	c, err = Load("", WithEnviron(nil))
	require.NoError(t, err)
	require.Equal(t, Default(), c)

	file := writeFile(t, "media:\n  timeout: 45s\nstore:\n  dsn: from-file.db\n")
	c, err = Load(file, WithEnviron([]string{
		"PATH=/usr/bin:/bin",
		"VNUMTEST_BIN=/tmp/vnum",
		"VNUM=1",
		"VNUM_MEDIA_TIMEOUT=10s",
		"VNUM_MEDIA_TIMEOUT=20s",
		"VNUM_SIP_LISTEN=udp://127.0.0.1:5070, tcp://127.0.0.1:5070",
		"VNUM_STORE_DSN=",
	}))
	require.NoError(t, err)
	require.Equal(t, 20*time.Second, c.Media.Timeout, "the later entry wins over the earlier and the file")
	require.Equal(t, []string{"udp://127.0.0.1:5070", "tcp://127.0.0.1:5070"}, c.SIP.Listen)
	require.Equal(t, filepath.Join(filepath.Dir(file), "from-file.db"), c.Store.DSN,
		"an empty variable leaves the file's value (beside the file)")
}

// TestProcessEnvironByDefault: without WithEnviron, Load reads the
// process's environment, unknown variables included.
func TestProcessEnvironByDefault(t *testing.T) {
	t.Setenv("VNUM_MEDIA_TIMEOUT", "90s")
	c, err := Load("")
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, c.Media.Timeout)

	t.Setenv("VNUM_MEDIA_TIMOUT", "30s")
	_, err = Load("")
	require.EqualError(t, err, "config: environment: VNUM_MEDIA_TIMOUT is not a configuration key (did you mean VNUM_MEDIA_TIMEOUT?)")
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"ABC", "", 3},
		{"VNUM_MEDIA_TIMOUT", "VNUM_MEDIA_TIMEOUT", 1},
		{"VNUM_MEDIA_TIEMOUT", "VNUM_MEDIA_TIMEOUT", 2},
		{"KITTEN", "SITTING", 3},
	} {
		require.Equal(t, tc.want, editDistance(tc.a, tc.b), "%s %s", tc.a, tc.b)
		require.Equal(t, tc.want, editDistance(tc.b, tc.a), "%s %s", tc.b, tc.a)
	}
}
