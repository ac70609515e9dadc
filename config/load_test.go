package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// TestDurationNeedsUnit: a bare number is refused for every duration key,
// from YAML and from VNUM_ variables, in one line naming key, value and the
// wanted form; mapstructure would otherwise read it as nanoseconds.
func TestDurationNeedsUnit(t *testing.T) {
	var durations []string
	for _, k := range Keys() {
		if keyTypes()[k] == durationType {
			durations = append(durations, k)
		}
	}
	require.Contains(t, durations, "binding.ttl")
	require.Contains(t, durations, "media.timeout")
	for _, key := range durations {
		section, name, _ := strings.Cut(key, ".")
		for _, raw := range []string{"720", "0", `"60"`, "1.5", "[1h]"} {
			t.Run(key+"="+raw+" in yaml", func(t *testing.T) {
				_, err := Load(writeFile(t, section+":\n  "+name+": "+raw+"\n"))
				require.Error(t, err)
				msg := err.Error()
				require.NotContains(t, msg, "\n")
				require.Contains(t, msg, key+": got ")
				require.Contains(t, msg, "want a duration with a unit")
			})
		}
		for _, raw := range []string{"720", "60", "0", "10 minutes"} {
			t.Run(key+"="+raw+" in env", func(t *testing.T) {
				t.Setenv(EnvName(key), raw)
				_, err := Load("")
				require.Error(t, err)
				require.Equal(t, "config: "+EnvName(key)+": "+key+": got \""+raw+"\", want a duration with a unit, e.g. "+example(key), err.Error())
			})
		}
		t.Run(key+" with unit", func(t *testing.T) {
			t.Setenv(EnvName(key), "90s")
			c, err := Load(writeFile(t, section+":\n  "+name+": 1h30m\n"))
			require.NoError(t, err)
			require.Equal(t, "90s", c.Masked()[section].(map[string]any)[name])
		})
	}
	_, err := Load(writeFile(t, "binding:\n  ttl: 720\n"))
	require.ErrorContains(t, err, "vnum.yaml: binding.ttl: got 720, want a duration with a unit, e.g. 720h")
}

// TestUnknownKeys: every key of the file is checked against the known set,
// nested ones and empty sections included.
func TestUnknownKeys(t *testing.T) {
	tests := map[string]struct {
		yaml, want string
	}{
		"empty section":  {"sipp: {}\n", "sipp: unknown key (known keys: admin, billing, binding, calls"},
		"top scalar":     {"verbose: true\n", "verbose: unknown key"},
		"nested":         {"media:\n  timout: 60s\n", "media.timout: unknown key (known keys in media: ip, kernel, rtp_ports, timeout)"},
		"deeper":         {"store:\n  dsn:\n    file: x\n", "store.dsn: got a section, want a string"},
		"section scalar": {"media: 5\n", "media: is a section, got 5"},
		"wrong kind":     {"ivr:\n  attempts: three\n", `ivr.attempts: got "three", want a whole number`},
		"bool":           {"admin:\n  pprof: maybe\n", `admin.pprof: got "maybe", want true or false`},
		"list":           {"sip:\n  listen: {a: b}\n", "sip.listen: got a section, want a list of strings"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Load(writeFile(t, tc.yaml))
			require.Error(t, err)
			require.NotContains(t, err.Error(), "\n")
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "decoding failed")
		})
	}
}

// TestEnvValuesChecked: a VNUM_ variable of the wrong kind is one line
// naming the variable, the key, the value and what is wanted.
func TestEnvValuesChecked(t *testing.T) {
	for env, want := range map[string]string{
		"VNUM_IVR_ATTEMPTS=three": `config: VNUM_IVR_ATTEMPTS: ivr.attempts: got "three", want a whole number`,
		"VNUM_ADMIN_PPROF=maybe":  `config: VNUM_ADMIN_PPROF: admin.pprof: got "maybe", want true or false`,
		"VNUM_BINDING_TTL=30d":    `config: VNUM_BINDING_TTL: binding.ttl: got "30d", want a duration with a unit, e.g. 720h`,
	} {
		name, value, _ := strings.Cut(env, "=")
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, value)
			_, err := Load("")
			require.EqualError(t, err, want)
		})
	}
}

// TestKeysMatchDefaults: the reflected key list and the defaults agree,
// so every known key reaches viper (and its VNUM_ variable works).
func TestKeysMatchDefaults(t *testing.T) {
	var fromDefaults []string
	for k := range defaults() {
		fromDefaults = append(fromDefaults, k)
	}
	require.ElementsMatch(t, Keys(), fromDefaults)
}

// TestMaskedSecrets: passwords inside DSNs and URLs are masked wherever
// they appear; values without one are printed as they are.
func TestMaskedSecrets(t *testing.T) {
	c := Default()
	c.Store.Driver = DriverPostgres
	c.Store.DSN = "postgres://vnum:pa55word@db.example:5432/vnum?sslmode=disable"
	c.Trunk.Outbound = "sip:trunkuser:trunkpw@203.0.113.10:5060;transport=udp"
	c.SIP.Listen = []string{"udp://127.0.0.1:5060"}
	m := c.Masked()
	require.Equal(t, "postgres://vnum:***@db.example:5432/vnum?sslmode=disable", m["store"].(map[string]any)["dsn"])
	require.Equal(t, "sip:trunkuser:***@203.0.113.10:5060;transport=udp", m["trunk"].(map[string]any)["outbound"])
	require.Equal(t, []string{"udp://127.0.0.1:5060"}, m["sip"].(map[string]any)["listen"])

	for in, want := range map[string]string{
		"vnum.db":                                    "vnum.db",
		"postgres://vnum@db/vnum":                    "postgres://vnum@db/vnum",
		"postgres://:secret@db/vnum":                 "postgres://:***@db/vnum",
		"host=db user=vnum password=secret dbname=v": "host=db user=vnum password=*** dbname=v",
		"postgres://db/vnum?user=v&password=s&x=1":   "postgres://db/vnum?user=v&password=***&x=1",
		"sip:203.0.113.10:5060;transport=udp":        "sip:203.0.113.10:5060;transport=udp",
		"sip:user@203.0.113.10":                      "sip:user@203.0.113.10",
	} {
		require.Equal(t, want, MaskURL(in), in)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                              "0s",
		2 * time.Second:                "2s",
		60 * time.Second:               "60s",
		90 * time.Second:               "90s",
		15 * time.Minute:               "15m",
		2 * time.Hour:                  "2h",
		2160 * time.Hour:               "2160h",
		90 * time.Minute:               "1h30m",
		time.Hour + time.Second:        "1h0m1s",
		1500 * time.Millisecond:        "1.5s",
		2*time.Minute + 30*time.Second: "2m30s",
	} {
		require.Equal(t, want, FormatDuration(d))
		back, err := time.ParseDuration(want)
		require.NoError(t, err)
		require.Equal(t, d, back)
	}
}

// TestExampleFile: vnum.example.yaml at the repository root is accepted as
// it is, equals the defaults but for the trunk (serve needs one: the file
// names a documentation address to replace) and the store and the
// recordings (beside it), and
// names every known key.
func TestExampleFile(t *testing.T) {
	const file = "../vnum.example.yaml"
	c, err := Load(file)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	want := Default()
	want.Trunk.Outbound = "sip:203.0.113.10:5060;transport=udp"
	// Its store is beside it (a relative store.dsn in a file).
	want.Store.DSN, err = filepath.Abs(filepath.Join("..", DefaultStoreDSN))
	require.NoError(t, err)
	// And so are its recordings.
	want.Recording.Dir, err = filepath.Abs(filepath.Join("..", DefaultRecordingDir))
	require.NoError(t, err)
	require.Equal(t, want, c)

	body, err := os.ReadFile(file)
	require.NoError(t, err)
	var root map[string]any
	require.NoError(t, yaml.Unmarshal(body, &root))
	var inFile []string
	for section, v := range root {
		m, ok := v.(map[string]any)
		require.True(t, ok, section)
		for k := range m {
			inFile = append(inFile, section+"."+k)
		}
	}
	require.ElementsMatch(t, Keys(), inFile)
	// Every key carries a comment saying what it is.
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "  ") && !strings.HasPrefix(strings.TrimSpace(line), "#") && strings.TrimSpace(line) != "" {
			require.Contains(t, line, "#", "no comment: %q", line)
		}
	}
}

// TestDurationHook: the decode hook itself, the last guard behind the file
// and environment checks, lets only strings with a unit into a duration.
func TestDurationHook(t *testing.T) {
	for _, data := range []any{720, int64(60), 1.5, "720", "0", ""} {
		_, err := durationNeedsUnit(reflect.TypeOf(data), durationType, data)
		require.Error(t, err, "%#v", data)
	}
	for _, data := range []any{"720h", "90s", "1h30m"} {
		got, err := durationNeedsUnit(reflect.TypeOf(data), durationType, data)
		require.NoError(t, err)
		require.Equal(t, data, got)
	}
	got, err := durationNeedsUnit(durationType, durationType, DefaultBindingTTL)
	require.NoError(t, err, "a default is already a duration")
	require.Equal(t, DefaultBindingTTL, got)
	got, err = durationNeedsUnit(reflect.TypeOf(5), reflect.TypeOf(0), 5)
	require.NoError(t, err, "other types pass")
	require.Equal(t, 5, got)
}
