package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	// The billing time zone must load on minimal hosts without a zoneinfo
	// database, so the binary carries its own copy.
	_ "time/tzdata"
)

// KeyError is a validation error that names the offending key.
type KeyError struct {
	// Key is the configuration key path, e.g. "ivr.answer".
	Key string
	// Reason says what is wrong with the value.
	Reason string
}

// Error returns "key: reason".
func (e *KeyError) Error() string { return e.Key + ": " + e.Reason }

// decimalRe matches a non-negative decimal with at most six fractional
// digits, the precision of micro-units of money.
var decimalRe = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,6})?$`)

// currencyRe matches an ISO 4217 alphabetic code.
var currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)

// Validate checks every key and returns the first problems found, each
// naming its key and why it is wrong, joined into one error.
func (c *Config) Validate() error {
	k := &keyProblems{}
	c.validateSIP(k)
	c.validateSecurity(k)
	c.validateMedia(k)
	c.validateIVR(k)
	c.validateTrunk(k)
	c.validateLifetimes(k)
	c.validateBilling(k)
	c.validateStore(k)
	c.validateProtection(k)
	c.validateEvents(k)
	c.validateRecording(k)
	if _, err := ParseLogLevel(c.Log.Level); err != nil {
		k.bad("log.level", "%v", err)
	}
	// admin: an empty listen address disables the admin API.
	if err := checkHostPort(c.Admin.Listen); c.Admin.Listen != "" && err != nil {
		k.bad("admin.listen", "%v, got %q", err, c.Admin.Listen)
	}
	return errors.Join(k.errs...)
}

// keyProblems collects what Validate finds, each naming its key.
type keyProblems struct{ errs []error }

// bad notes that key's value is wrong, and why.
func (k *keyProblems) bad(key, format string, args ...any) {
	k.errs = append(k.errs, &KeyError{Key: key, Reason: fmt.Sprintf(format, args...)})
}

// positive notes key's duration d unless it is positive.
func (k *keyProblems) positive(key string, d time.Duration) {
	if d <= 0 {
		k.bad(key, "must be a positive duration, got %s", FormatDuration(d))
	}
}

// validateSIP checks the sip section.
func (c *Config) validateSIP(k *keyProblems) {
	if len(c.SIP.Listen) == 0 {
		k.bad("sip.listen", "must list at least one udp://, tcp:// or tls:// host:port")
	}
	hasTLS := false
	for _, l := range c.SIP.Listen {
		scheme, err := checkListen(l)
		if err != nil {
			k.bad("sip.listen", "%q: %v", l, err)
			continue
		}
		hasTLS = hasTLS || scheme == "tls"
	}
	if (c.SIP.TLSCert == "") != (c.SIP.TLSKey == "") {
		k.bad("sip.tls_cert", "tls_cert and tls_key must be set together")
	} else if hasTLS && c.SIP.TLSCert == "" {
		k.bad("sip.tls_cert", "a tls:// listener needs tls_cert and tls_key")
	}
	if len(c.SIP.DigestAlgorithms) == 0 {
		k.bad("sip.digest_algorithms", "must name at least one of MD5, SHA-256")
	}
	for i, a := range c.SIP.DigestAlgorithms {
		if a != DigestMD5 && a != DigestSHA256 {
			k.bad("sip.digest_algorithms", "must be MD5 or SHA-256, got %q", a)
		} else if slices.Contains(c.SIP.DigestAlgorithms[:i], a) {
			k.bad("sip.digest_algorithms", "lists %s twice", a)
		}
	}
}

// validateSecurity checks the security section.
func (c *Config) validateSecurity(k *keyProblems) {
	if c.Security.AuthFailures < 1 {
		k.bad("security.auth_failures", "must be at least 1, got %d", c.Security.AuthFailures)
	}
	k.positive("security.block_for", c.Security.BlockFor)
	if c.Security.InviteRate < 1 {
		k.bad("security.invite_rate", "must be at least 1 INVITE per second, got %d", c.Security.InviteRate)
	}
	if c.Security.InvalidExtensions < 1 {
		k.bad("security.invalid_extensions", "must be at least 1 per hour, got %d", c.Security.InvalidExtensions)
	}
}

// validateMedia checks the media section.
func (c *Config) validateMedia(k *keyProblems) {
	// The relay advertises media.ip in SDP (RFC 4566 §5.7): 0.0.0.0 there
	// means "no media" to the peer (RFC 3264 §8.4), so a wildcard is refused.
	if ip, err := c.Media.Addr(); err != nil {
		k.bad("media.ip", "must be an IP address, got %q", c.Media.IP)
	} else if ip.IsUnspecified() {
		k.bad("media.ip", "got %s, want this host's own address: it is advertised in SDP, where %s means no media", c.Media.IP, c.Media.IP)
	}
	if _, _, err := c.Media.PortRange(); err != nil {
		k.bad("media.rtp_ports", "%v, got %q", err, c.Media.RTPPorts)
	}
	k.positive("media.timeout", c.Media.Timeout)
	switch c.Media.Kernel {
	case KernelAuto, KernelOn, KernelOff:
	default:
		k.bad("media.kernel", "must be auto, on or off, got %q", c.Media.Kernel)
	}
}

// The lengths an extension may have (ivr.extension_digits). Extensions on
// one host differ in at least two digits, which leaves 10^(n-1) of them
// per host: 10 with two digits, 1,000 with four, 100,000 with six.
const (
	// MinExtensionDigits is the shortest extension: ten per host.
	MinExtensionDigits = 2
	// MaxExtensionDigits is the longest extension a caller is asked to
	// key: 100,000 per host.
	MaxExtensionDigits = 6
)

// validateIVR checks the ivr section.
func (c *Config) validateIVR(k *keyProblems) {
	if c.IVR.ExtensionDigits < MinExtensionDigits || c.IVR.ExtensionDigits > MaxExtensionDigits {
		k.bad("ivr.extension_digits", "must be %d..%d, got %d", MinExtensionDigits, MaxExtensionDigits, c.IVR.ExtensionDigits)
	}
	k.positive("ivr.first_digit_timeout", c.IVR.FirstDigitTimeout)
	k.positive("ivr.inter_digit_timeout", c.IVR.InterDigitTimeout)
	if c.IVR.Attempts < 1 {
		k.bad("ivr.attempts", "must be at least 1, got %d", c.IVR.Attempts)
	}
	if c.IVR.Answer != AnswerAnswer && c.IVR.Answer != AnswerEarly {
		k.bad("ivr.answer", "must be answer or early, got %q", c.IVR.Answer)
	}
	if c.IVR.Language != "zh" && c.IVR.Language != "en" {
		k.bad("ivr.language", "must be zh or en, got %q", c.IVR.Language)
	}
}

// validateTrunk checks the trunk section.
func (c *Config) validateTrunk(k *keyProblems) {
	if o := c.Trunk.Outbound; o != "" && !strings.HasPrefix(o, "sip:") && !strings.HasPrefix(o, "sips:") {
		k.bad("trunk.outbound", "must be a sip: or sips: URI, got %q", o)
	}
	if d := c.Trunk.Keepalive; d != 0 && d < time.Second {
		k.bad("trunk.keepalive", "got %s, want 0 (no keepalives) or at least 1s", FormatDuration(d))
	}
	if c.Trunk.Password != "" && c.Trunk.Username == "" {
		k.bad("trunk.username", "must be set when trunk.password is")
	}
	for _, cidr := range c.Trunk.InboundCIDRs {
		if _, err := ParsePrefix(cidr); err != nil {
			k.bad("trunk.inbound_cidrs", "%v", err)
		}
	}
	if c.Trunk.NumberFormat != NumberFormatNational && c.Trunk.NumberFormat != NumberFormatE164 {
		k.bad("trunk.number_format", "must be national or e164, got %q", c.Trunk.NumberFormat)
	}
}

// validateLifetimes checks the binding and calls sections.
func (c *Config) validateLifetimes(k *keyProblems) {
	if c.Binding.TTL < time.Hour || c.Binding.TTL > 8760*time.Hour { // README "Bindings"; binding.MinTTL, MaxTTL
		k.bad("binding.ttl", "must lie between 1h and 8760h (365 days), got %s", FormatDuration(c.Binding.TTL))
	}
	k.positive("binding.quarantine", c.Binding.Quarantine)
	k.positive("calls.ring_timeout", c.Calls.RingTimeout)
	k.positive("calls.max_duration", c.Calls.MaxDuration)
	k.positive("calls.drain_timeout", c.Calls.DrainTimeout)
	if c.Calls.MaxActive < 0 {
		k.bad("calls.max_active", "must be 0 (no limit but the RTP ports) or more, got %d", c.Calls.MaxActive)
	}
}

// validateBilling checks the billing section.
func (c *Config) validateBilling(k *keyProblems) {
	if !currencyRe.MatchString(c.Billing.Currency) {
		k.bad("billing.currency", "must be a 3-letter ISO 4217 code, got %q", c.Billing.Currency)
	}
	if !decimalRe.MatchString(c.Billing.RentalPerDay) {
		k.bad("billing.rental_per_day", "must be a decimal >= 0 with at most 6 decimals, got %q", c.Billing.RentalPerDay)
	}
	if !decimalRe.MatchString(c.Billing.PerMinute) {
		k.bad("billing.per_minute", "must be a decimal >= 0 with at most 6 decimals, got %q", c.Billing.PerMinute)
	}
	if _, err := time.LoadLocation(c.Billing.Timezone); err != nil || c.Billing.Timezone == "" {
		k.bad("billing.timezone", "unknown time zone %q", c.Billing.Timezone)
	}
}

// validateStore checks the store section.
func (c *Config) validateStore(k *keyProblems) {
	if c.Store.Driver != DriverSQLite && c.Store.Driver != DriverPostgres {
		k.bad("store.driver", "must be sqlite or postgres, got %q", c.Store.Driver)
	}
	if strings.TrimSpace(c.Store.DSN) == "" {
		k.bad("store.dsn", "must not be empty")
	}
	k.positive("store.timeout", c.Store.Timeout)
	if sp := c.Store.Spool; sp != "" && (strings.TrimSpace(sp) != sp || strings.ContainsFunc(sp, unicode.IsControl)) {
		// A stray space or a line break is a typo, not a directory meant.
		k.bad("store.spool", "want a directory path without surrounding spaces or control characters, got %q", sp)
	}
}

// checkListen checks one sip.listen URI and returns its scheme.
func checkListen(l string) (string, error) {
	scheme, hostport, ok := strings.Cut(l, "://")
	if !ok {
		return "", errors.New("want udp://, tcp:// or tls:// then host:port")
	}
	switch scheme {
	case "udp", "tcp", "tls":
	default:
		return "", fmt.Errorf("transport must be udp, tcp or tls, got %q", scheme)
	}
	return scheme, checkHostPort(hostport)
}

// checkHostPort accepts host:port with a port of 0..65535 (0 picks a free
// port, which tests use).
func checkHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" {
		return errors.New("want host:port with a host (0.0.0.0 for all addresses)")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}
