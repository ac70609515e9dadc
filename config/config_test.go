package config

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vnum.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load("")
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, Default(), c)

	require.Equal(t, []string{"udp://127.0.0.1:5060", "tcp://127.0.0.1:5060"}, c.SIP.Listen)
	require.Equal(t, []string{"MD5"}, c.SIP.DigestAlgorithms)
	require.Equal(t, 10, c.Security.AuthFailures)
	require.Equal(t, 15*time.Minute, c.Security.BlockFor)
	require.Equal(t, "20000-29999", c.Media.RTPPorts)
	lo, hi, err := c.Media.PortRange()
	require.NoError(t, err)
	require.Equal(t, 20000, lo)
	require.Equal(t, 29999, hi)
	require.Equal(t, 60*time.Second, c.Media.Timeout)
	require.Equal(t, "auto", c.Media.Kernel)
	require.Equal(t, 4, c.IVR.ExtensionDigits)
	require.Equal(t, AnswerMode("answer"), c.IVR.Answer)
	require.Equal(t, "zh", c.IVR.Language)
	require.Empty(t, c.Trunk.InboundCIDRs)
	require.Equal(t, NumberFormat("national"), c.Trunk.NumberFormat)
	require.Equal(t, 720*time.Hour, c.Binding.TTL)
	require.Equal(t, 2160*time.Hour, c.Binding.Quarantine)
	require.Equal(t, 2*time.Hour, c.Calls.MaxDuration)
	require.Equal(t, "0.00018", c.Billing.RentalPerDay)
	require.Equal(t, "0.02", c.Billing.PerMinute)
	require.Equal(t, "Asia/Shanghai", c.Billing.Timezone)
	require.Equal(t, "sqlite", c.Store.Driver)
	require.Equal(t, "vnum.db", c.Store.DSN)
	require.Equal(t, "127.0.0.1:8080", c.Admin.Listen)
	require.Equal(t, "info", c.Log.Level)
}

func TestYAMLFile(t *testing.T) {
	p := writeFile(t, `
sip:
  listen: [udp://0.0.0.0:5070]
  digest_algorithms: [SHA-256, MD5]
media:
  rtp_ports: 30000-30099
ivr:
  extension_digits: 3
  answer: early
trunk:
  inbound_cidrs: [203.0.113.0/24, 198.51.100.7]
  password: s3cret
  username: vnum
binding:
  ttl: 48h
billing:
  per_minute: 0.05
store:
  dsn: /var/lib/vnum/vnum.db
`)
	c, err := Load(p)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, []string{"udp://0.0.0.0:5070"}, c.SIP.Listen)
	require.Equal(t, []string{"SHA-256", "MD5"}, c.SIP.DigestAlgorithms)
	lo, hi, err := c.Media.PortRange()
	require.NoError(t, err)
	require.Equal(t, 30000, lo)
	require.Equal(t, 30099, hi)
	require.Equal(t, 3, c.IVR.ExtensionDigits)
	require.Equal(t, AnswerMode("early"), c.IVR.Answer)
	require.Equal(t, []string{"203.0.113.0/24", "198.51.100.7"}, c.Trunk.InboundCIDRs)
	require.Equal(t, 48*time.Hour, c.Binding.TTL)
	require.Equal(t, "0.05", c.Billing.PerMinute)
	require.Equal(t, "/var/lib/vnum/vnum.db", c.Store.DSN)
	// Keys the file does not mention keep their defaults.
	require.Equal(t, 2160*time.Hour, c.Binding.Quarantine)
	require.Equal(t, "zh", c.IVR.Language)

	m := c.Masked()
	require.Equal(t, Mask, m["trunk"].(map[string]any)["password"])
	require.Equal(t, "", m["admin"].(map[string]any)["token"])
	require.Equal(t, "48h", m["binding"].(map[string]any)["ttl"])
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	require.Error(t, err)

	_, err = Load(writeFile(t, "sip: [\n"))
	require.Error(t, err)

	_, err = Load(writeFile(t, "ivr:\n  extension_digit: 5\n"))
	require.ErrorContains(t, err, "extension_digit")
}

func TestEnvOverride(t *testing.T) {
	t.Setenv("VNUM_STORE_DSN", "env.db")
	t.Setenv("VNUM_SIP_LISTEN", "udp://127.0.0.1:5080, tcp://127.0.0.1:5080")
	t.Setenv("VNUM_TRUNK_INBOUND_CIDRS", "10.0.0.0/8,192.0.2.1/32")
	t.Setenv("VNUM_IVR_EXTENSION_DIGITS", "5")
	t.Setenv("VNUM_CALLS_RING_TIMEOUT", "30s")
	t.Setenv("VNUM_ADMIN_TOKEN", "tok")

	// With no file at all.
	c, err := Load("")
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "env.db", c.Store.DSN)
	require.Equal(t, []string{"udp://127.0.0.1:5080", "tcp://127.0.0.1:5080"}, c.SIP.Listen)
	require.Equal(t, []string{"10.0.0.0/8", "192.0.2.1/32"}, c.Trunk.InboundCIDRs)
	require.Equal(t, 5, c.IVR.ExtensionDigits)
	require.Equal(t, 30*time.Second, c.Calls.RingTimeout)
	require.Equal(t, Mask, c.Masked()["admin"].(map[string]any)["token"])

	// The environment wins over the file.
	c, err = Load(writeFile(t, "store:\n  dsn: file.db\n  driver: sqlite\n"))
	require.NoError(t, err)
	require.Equal(t, "env.db", c.Store.DSN)
}

func TestValidateNamesKey(t *testing.T) {
	tests := map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"listen empty":       {func(c *Config) { c.SIP.Listen = nil }, "sip.listen:"},
		"listen scheme":      {func(c *Config) { c.SIP.Listen = []string{"ws://1.2.3.4:5060"} }, "sip.listen:"},
		"listen no port":     {func(c *Config) { c.SIP.Listen = []string{"udp://1.2.3.4"} }, "sip.listen:"},
		"tls without cert":   {func(c *Config) { c.SIP.Listen = []string{"tls://1.2.3.4:5061"} }, "sip.tls_cert:"},
		"cert without key":   {func(c *Config) { c.SIP.TLSCert = "c.pem" }, "sip.tls_cert:"},
		"digest empty":       {func(c *Config) { c.SIP.DigestAlgorithms = nil }, "sip.digest_algorithms:"},
		"digest unknown":     {func(c *Config) { c.SIP.DigestAlgorithms = []string{"SHA-1"} }, "sip.digest_algorithms:"},
		"digest twice":       {func(c *Config) { c.SIP.DigestAlgorithms = []string{"MD5", "MD5"} }, "sip.digest_algorithms:"},
		"auth failures":      {func(c *Config) { c.Security.AuthFailures = 0 }, "security.auth_failures:"},
		"block for":          {func(c *Config) { c.Security.BlockFor = 0 }, "security.block_for:"},
		"media ip":           {func(c *Config) { c.Media.IP = "localhost" }, "media.ip:"},
		"media ip wildcard":  {func(c *Config) { c.Media.IP = "0.0.0.0" }, "media.ip: got 0.0.0.0"},
		"media ip wildcard6": {func(c *Config) { c.Media.IP = "::" }, "media.ip: got ::"},
		"rtp odd start":      {func(c *Config) { c.Media.RTPPorts = "20001-29999" }, "media.rtp_ports:"},
		"rtp reversed":       {func(c *Config) { c.Media.RTPPorts = "30000-20000" }, "media.rtp_ports:"},
		"rtp garbage":        {func(c *Config) { c.Media.RTPPorts = "many" }, "media.rtp_ports:"},
		"media timeout":      {func(c *Config) { c.Media.Timeout = -time.Second }, "media.timeout:"},
		"media kernel":       {func(c *Config) { c.Media.Kernel = "yes" }, `media.kernel: must be auto, on or off, got "yes"`},
		"digits low":         {func(c *Config) { c.IVR.ExtensionDigits = 2 }, "ivr.extension_digits:"},
		"digits high":        {func(c *Config) { c.IVR.ExtensionDigits = 9 }, "ivr.extension_digits:"},
		"first digit":        {func(c *Config) { c.IVR.FirstDigitTimeout = 0 }, "ivr.first_digit_timeout:"},
		"inter digit":        {func(c *Config) { c.IVR.InterDigitTimeout = 0 }, "ivr.inter_digit_timeout:"},
		"attempts":           {func(c *Config) { c.IVR.Attempts = 0 }, "ivr.attempts:"},
		"answer":             {func(c *Config) { c.IVR.Answer = "x" }, `ivr.answer: must be answer or early, got "x"`},
		"language":           {func(c *Config) { c.IVR.Language = "fr" }, "ivr.language:"},
		"outbound":           {func(c *Config) { c.Trunk.Outbound = "203.0.113.1" }, "trunk.outbound:"},
		"password alone":     {func(c *Config) { c.Trunk.Password = "p" }, "trunk.username:"},
		"cidr":               {func(c *Config) { c.Trunk.InboundCIDRs = []string{"10.0.0.0/33"} }, `trunk.inbound_cidrs: "10.0.0.0/33": not a CIDR`},
		"number format":      {func(c *Config) { c.Trunk.NumberFormat = "intl" }, "trunk.number_format:"},
		"ttl":                {func(c *Config) { c.Binding.TTL = 0 }, "binding.ttl:"},
		"quarantine":         {func(c *Config) { c.Binding.Quarantine = 0 }, "binding.quarantine:"},
		"ring timeout":       {func(c *Config) { c.Calls.RingTimeout = 0 }, "calls.ring_timeout:"},
		"max duration":       {func(c *Config) { c.Calls.MaxDuration = 0 }, "calls.max_duration:"},
		"drain timeout":      {func(c *Config) { c.Calls.DrainTimeout = 0 }, "calls.drain_timeout:"},
		"currency":           {func(c *Config) { c.Billing.Currency = "yuan" }, "billing.currency:"},
		"rental negative":    {func(c *Config) { c.Billing.RentalPerDay = "-1" }, "billing.rental_per_day:"},
		"per minute float":   {func(c *Config) { c.Billing.PerMinute = "1e-2" }, "billing.per_minute:"},
		"per minute precise": {func(c *Config) { c.Billing.PerMinute = "0.0000001" }, "billing.per_minute:"},
		"timezone":           {func(c *Config) { c.Billing.Timezone = "Mars/Olympus" }, "billing.timezone:"},
		"driver":             {func(c *Config) { c.Store.Driver = "mysql" }, "store.driver:"},
		"dsn":                {func(c *Config) { c.Store.DSN = " " }, "store.dsn:"},
		"spool space":        {func(c *Config) { c.Store.Spool = "/var/lib/vnum " }, `store.spool: want a directory path`},
		"spool newline":      {func(c *Config) { c.Store.Spool = "/var/lib/vnum\nx" }, `store.spool: want a directory path`},
		"admin listen":       {func(c *Config) { c.Admin.Listen = "8080" }, "admin.listen:"},
		"log level":          {func(c *Config) { c.Log.Level = "verbose" }, `log.level: want debug, info, warn or error, got "verbose"`},
		"log level case":     {func(c *Config) { c.Log.Level = "INFO" }, `log.level: want debug, info, warn or error, got "INFO"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Default()
			tc.mutate(c)
			err := c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParsePortRange(t *testing.T) {
	lo, hi, err := ParsePortRange(" 10000 - 10001 ")
	require.NoError(t, err)
	require.Equal(t, 10000, lo)
	require.Equal(t, 10001, hi)
	for _, s := range []string{"", "10000", "1000-2000", "10000-70000", "10000-10000"} {
		_, _, err := ParsePortRange(s)
		require.ErrorIs(t, err, ErrPortRange, s)
	}
}

// TestParsePrefix: a trunk source is a CIDR or one address, which stands
// for itself alone; anything else is refused with ErrCIDR. Validate and
// the server read the list through the same function, so what one accepts
// the other gets.
func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.0/24": "203.0.113.0/24",
		"198.51.100.7":   "198.51.100.7/32",
		"2001:db8::/32":  "2001:db8::/32",
		"2001:db8::1":    "2001:db8::1/128",
	} {
		p, err := ParsePrefix(in)
		require.NoError(t, err, in)
		require.Equal(t, want, p.String(), in)
	}
	for _, in := range []string{"", "10.0.0.0/33", "trunk.example", "10.0.0", "10.0.0.0/8/8"} {
		_, err := ParsePrefix(in)
		require.ErrorIs(t, err, ErrCIDR, in)
	}

	c := Default()
	c.Trunk.InboundCIDRs = []string{"203.0.113.0/24", "198.51.100.7"}
	require.NoError(t, c.Validate())
	ps, err := c.Trunk.InboundPrefixes()
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.51.100.7/32")}, ps)
	c.Trunk.InboundCIDRs = append(c.Trunk.InboundCIDRs, "10.0.0.0/33")
	require.Error(t, c.Validate())
	_, err = c.Trunk.InboundPrefixes()
	require.ErrorIs(t, err, ErrCIDR)
}

func TestAdminListenEmptyDisables(t *testing.T) {
	c := Default()
	c.Admin.Listen = ""
	require.NoError(t, c.Validate())
}

// TestLogLevel: the four levels of log.level, from the file or the
// environment, map onto slog's; anything else is refused naming the key.
func TestLogLevel(t *testing.T) {
	for name, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
	} {
		got, err := ParseLogLevel(name)
		require.NoError(t, err)
		require.Equal(t, want, got)

		c, err := Load(writeFile(t, "log:\n  level: "+name+"\n"), WithEnviron(nil))
		require.NoError(t, err)
		require.NoError(t, c.Validate())
		require.Equal(t, name, c.Log.Level)
		require.Equal(t, name, c.Masked()["log"].(map[string]any)["level"])
	}
	for _, bad := range []string{"", "warning", "Debug", "info+2", "0"} {
		_, err := ParseLogLevel(bad)
		require.ErrorIs(t, err, ErrLogLevel, bad)
	}
	c, err := Load("", WithEnviron([]string{"VNUM_LOG_LEVEL=warn"}))
	require.NoError(t, err)
	require.Equal(t, "warn", c.Log.Level)
	c, err = Load("", WithEnviron([]string{"VNUM_LOG_LEVEL=trace"}))
	require.NoError(t, err)
	require.EqualError(t, c.Validate(), `log.level: want debug, info, warn or error, got "trace"`)
}

// TestRelativeStoreDSN: a relative SQLite store.dsn in a configuration
// file is taken from the file's directory, whatever the working directory;
// one from VNUM_STORE_DSN, or the default without a file, from the working
// directory; absolute paths, memory and PostgreSQL DSNs stay as they are.
func TestRelativeStoreDSN(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "etc", "vnum.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o700))
	load := func(body string) string {
		t.Helper()
		require.NoError(t, os.WriteFile(file, []byte(body), 0o600))
		c, err := Load(file, WithEnviron(nil))
		require.NoError(t, err)
		return c.Store.DSN
	}
	require.Equal(t, filepath.Join(dir, "etc", "data", "vnum.db"), load("store:\n  dsn: data/vnum.db\n"))
	require.Equal(t, filepath.Join(dir, "vnum.db"), load("store:\n  dsn: ../vnum.db\n"))
	require.Equal(t, filepath.Join(dir, "etc", "vnum.db"), load("ivr:\n  language: en\n"), "the default, beside the file")
	require.Equal(t, "file:"+filepath.Join(dir, "etc", "v.db")+"?mode=rwc", load("store:\n  dsn: file:v.db?mode=rwc\n"))
	require.Equal(t, "/var/lib/vnum/vnum.db", load("store:\n  dsn: /var/lib/vnum/vnum.db\n"))
	require.Equal(t, ":memory:", load("store:\n  dsn: \":memory:\"\n"))
	pg := "postgres://vnum@db:5432/vnum?sslmode=disable"
	require.Equal(t, pg, load("store:\n  driver: postgres\n  dsn: "+pg+"\n"))

	// A relative file name given as the file's argument is taken from the
	// working directory first.
	load("ivr:\n  language: en\n")
	t.Chdir(dir)
	c, err := Load(filepath.Join("etc", "vnum.yaml"), WithEnviron(nil))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "etc", "vnum.db"), c.Store.DSN)

	// The environment's DSN is the shell's: from the working directory.
	shell := WithEnviron([]string{"VNUM_STORE_DSN=here.db"})
	c, err = Load(file, shell)
	require.NoError(t, err)
	require.Equal(t, "here.db", c.Store.DSN)
	c, err = Load("", shell)
	require.NoError(t, err)
	require.Equal(t, "here.db", c.Store.DSN)
}

// TestSpoolDir: store.spool names the spool's directory, a relative one
// in a file taken from the file's directory (one from VNUM_STORE_SPOOL
// from the working directory); unset, the spool is beside a SQLite store,
// else beside the configuration file, else in the working directory.
func TestSpoolDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "etc", "vnum.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o700))
	load := func(body string, opts ...Option) *Config {
		t.Helper()
		require.NoError(t, os.WriteFile(file, []byte(body), 0o600))
		c, err := Load(file, append([]Option{WithEnviron(nil)}, opts...)...)
		require.NoError(t, err)
		require.NoError(t, c.Validate())
		return c
	}
	pg := "  driver: postgres\n  dsn: postgres://vnum@db:5432/vnum\n"
	require.Equal(t, filepath.Join(dir, "etc", "spool"), load("store:\n  spool: spool\n"+pg).Store.SpoolDir(file))
	require.Equal(t, "/var/lib/vnum", load("store:\n  spool: /var/lib/vnum\n").Store.SpoolDir(file))
	require.Equal(t, "rel", load("store:\n"+pg, WithEnviron([]string{"VNUM_STORE_SPOOL=rel"})).Store.SpoolDir(file),
		"the environment's path is the shell's")
	require.Equal(t, "/var/lib/vnum", load("store:\n  dsn: /var/lib/vnum/vnum.db\n").Store.SpoolDir(file),
		"beside the SQLite store")
	require.Equal(t, filepath.Join(dir, "etc"), load("store:\n"+pg).Store.SpoolDir(file), "beside the file")
	require.Equal(t, filepath.Join(dir, "etc"), load("store:\n  dsn: \":memory:\"\n").Store.SpoolDir(file))
	require.Equal(t, ".", Store{Driver: DriverPostgres, DSN: "postgres://db/vnum"}.SpoolDir(""))
	require.Equal(t, "data", Store{Driver: DriverSQLite, DSN: "data/vnum.db"}.SpoolDir(""))
}

// TestMediaKernel: on and off are words here, not the booleans YAML 1.1
// made of them, in the file and in the environment alike.
func TestMediaKernel(t *testing.T) {
	for _, v := range []string{"auto", "on", "off"} {
		c, err := Load(writeFile(t, "media:\n  kernel: "+v+"\n"))
		require.NoError(t, err)
		require.NoError(t, c.Validate())
		require.Equal(t, v, c.Media.Kernel)

		c, err = Load("", WithEnviron([]string{"VNUM_MEDIA_KERNEL=" + v}))
		require.NoError(t, err)
		require.Equal(t, v, c.Media.Kernel)
	}
	c, err := Load(writeFile(t, "media:\n  kernel: true\n"))
	if err == nil {
		err = c.Validate()
	}
	require.ErrorContains(t, err, "media.kernel")
}
