// Package config holds vnum's configuration: the Config struct, its
// defaults, loading from YAML and the environment, and validation.
//
// Viper is used only inside this package; everything else takes a *Config.
package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix is the prefix of environment variables that override
// configuration keys: VNUM_ + the key path upper-cased with "_" for ".".
const EnvPrefix = "VNUM"

// Default values of every configuration key (vnum.example.yaml).
const (
	DefaultSIPPublicHost       = ""
	DefaultSIPTLSCert          = ""
	DefaultSIPTLSKey           = ""
	DefaultAuthFailures        = 10
	DefaultBlockFor            = 15 * time.Minute
	DefaultInviteRate          = 20
	DefaultInvalidExtensions   = 10
	DefaultMediaIP             = "127.0.0.1"
	DefaultRTPPorts            = "20000-29999"
	DefaultMediaTimeout        = 60 * time.Second
	DefaultMediaKernel         = KernelAuto
	DefaultExtensionDigits     = 4
	DefaultFirstDigitTimeout   = 10 * time.Second
	DefaultInterDigitTimeout   = 5 * time.Second
	DefaultIVRAttempts         = 3
	DefaultIVRAnswer           = AnswerAnswer
	DefaultIVRLanguage         = "zh"
	DefaultTrunkOutbound       = ""
	DefaultTrunkKeepalive      = 30 * time.Second
	DefaultTrunkUsername       = ""
	DefaultTrunkPassword       = ""
	DefaultTrunkNumberFormat   = NumberFormatNational
	DefaultBindingTTL          = 720 * time.Hour
	DefaultBindingQuarantine   = 2160 * time.Hour
	DefaultRingTimeout         = 60 * time.Second
	DefaultMaxDuration         = 2 * time.Hour
	DefaultDrainTimeout        = 30 * time.Second
	DefaultMaxActive           = 0
	DefaultBillingCurrency     = "CNY"
	DefaultBillingRentalPerDay = "0.00018"
	DefaultBillingPerMinute    = "0.02"
	DefaultBillingTimezone     = "Asia/Shanghai"
	DefaultStoreDriver         = DriverSQLite
	DefaultStoreDSN            = "vnum.db"
	DefaultStoreTimeout        = 2 * time.Second
	DefaultStoreSpool          = ""
	DefaultNodeID              = ""
	DefaultLogLevel            = LogInfo
	DefaultAdminListen         = "127.0.0.1:8080"
	DefaultAdminToken          = ""
	DefaultAdminPProf          = false
)

// AnswerMode is ivr.answer: when a caller who must key an extension is
// answered. Load reads it and Validate refuses any value but the
// constants, so code compares it with them and nothing else.
type AnswerMode string

// NumberFormat is trunk.number_format: how the consignee's number is
// written to the carrier. Load reads it and Validate refuses any value
// but the constants.
type NumberFormat string

// The values of ivr.answer and trunk.number_format.
const (
	// KernelAuto relays RTP in the kernel where the host allows, in user
	// space elsewhere.
	KernelAuto = "auto"
	// KernelOn relays RTP in the kernel; serve refuses to start without it.
	KernelOn = "on"
	// KernelOff relays RTP in user space only.
	KernelOff = "off"
	// AnswerAnswer answers the call (200 OK) before the IVR collects digits.
	AnswerAnswer AnswerMode = "answer"
	// AnswerEarly collects digits in 183 early media without answering.
	AnswerEarly AnswerMode = "early"
	// NumberFormatNational sends B to the trunk as 13800138000.
	NumberFormatNational NumberFormat = "national"
	// NumberFormatE164 sends B to the trunk as +8613800138000.
	NumberFormatE164 NumberFormat = "e164"
)

// Enumerated values of other configuration keys.
const (
	// DigestMD5 is the MD5 digest algorithm (RFC 2617).
	DigestMD5 = "MD5"
	// DigestSHA256 is the SHA-256 digest algorithm (RFC 7616, RFC 8760).
	DigestSHA256 = "SHA-256"
	// DriverSQLite selects the embedded SQLite store.
	DriverSQLite = "sqlite"
	// DriverPostgres selects the PostgreSQL store.
	DriverPostgres = "postgres"
	// LogDebug logs everything, SIP transport details included.
	LogDebug = "debug"
	// LogInfo logs calls and the server's life, the default.
	LogInfo = "info"
	// LogWarn logs only what needs an operator's eye.
	LogWarn = "warn"
	// LogError logs only failures.
	LogError = "error"
)

// DefaultSIPListen returns the default sip.listen entries.
func DefaultSIPListen() []string {
	return []string{"udp://127.0.0.1:5060", "tcp://127.0.0.1:5060"}
}

// DefaultDigestAlgorithms returns the default sip.digest_algorithms.
func DefaultDigestAlgorithms() []string { return []string{DigestMD5} }

// Config is vnum's whole configuration (vnum.example.yaml).
type Config struct {
	// SIP configures signalling listeners and authentication.
	SIP SIP `mapstructure:"sip"`
	// Security configures blocking of sources that fail authentication.
	Security Security `mapstructure:"security"`
	// Media configures the RTP relay.
	Media Media `mapstructure:"media"`
	// IVR configures extension collection.
	IVR IVR `mapstructure:"ivr"`
	// Trunk configures the carrier SIP trunk.
	Trunk Trunk `mapstructure:"trunk"`
	// Binding configures binding lifetimes.
	Binding Binding `mapstructure:"binding"`
	// Calls configures call timers.
	Calls Calls `mapstructure:"calls"`
	// Billing configures rates and the billing time zone.
	Billing Billing `mapstructure:"billing"`
	// Store configures the database.
	Store Store `mapstructure:"store"`
	// Node names this node among several sharing one store.
	Node Node `mapstructure:"node"`
	// Protection configures consignee protection: quiet hours, caps, the
	// notice and the consignee's keys, the order's end.
	Protection Protection `mapstructure:"protection"`
	// Log configures the process's log.
	Log Log `mapstructure:"log"`
	// Admin configures the admin HTTP API.
	Admin Admin `mapstructure:"admin"`
	// Events configures the delivery of call events to merchants' webhooks.
	Events Events `mapstructure:"events"`
	// Recording configures which calls are recorded, where and how long.
	Recording Recording `mapstructure:"recording"`
}

// SIP is the sip section.
type SIP struct {
	// Listen lists transport URIs to listen on: udp://, tcp:// or tls://host:port.
	Listen []string `mapstructure:"listen"`
	// PublicHost is the host put in Contact, Via and SDP when behind NAT.
	PublicHost string `mapstructure:"public_host"`
	// TLSCert is the certificate file for tls:// listeners.
	TLSCert string `mapstructure:"tls_cert"`
	// TLSKey is the private key file for tls:// listeners.
	TLSKey string `mapstructure:"tls_key"`
	// DigestAlgorithms lists the digest algorithms offered, in order.
	DigestAlgorithms []string `mapstructure:"digest_algorithms"`
}

// Security is the security section.
type Security struct {
	// AuthFailures is how many failed digest attempts per source per minute
	// trigger a block.
	AuthFailures int `mapstructure:"auth_failures"`
	// BlockFor is how long a blocked source stays blocked.
	BlockFor time.Duration `mapstructure:"block_for"`
	// InviteRate is how many new INVITEs per second one non-trunk source
	// may send; the excess gets 503.
	InviteRate int `mapstructure:"invite_rate"`
	// InvalidExtensions is how many wrong extensions one caller may key per
	// hour before its calls are refused with 403.
	InvalidExtensions int `mapstructure:"invalid_extensions"`
}

// Media is the media section.
type Media struct {
	// IP is the address the relay binds and advertises.
	IP string `mapstructure:"ip"`
	// RTPPorts is the port range, e.g. "20000-29999"; PortRange reads it.
	RTPPorts string `mapstructure:"rtp_ports"`
	// Timeout hangs up both legs when no RTP arrives from either side.
	Timeout time.Duration `mapstructure:"timeout"`
	// Kernel is auto, on or off: whether the RTP of bridged calls is
	// relayed inside the kernel (eBPF) once both ends are learnt.
	Kernel string `mapstructure:"kernel"`
}

// IVR is the ivr section.
type IVR struct {
	// ExtensionDigits is the length of an extension E (2..6).
	ExtensionDigits int `mapstructure:"extension_digits"`
	// FirstDigitTimeout is how long the IVR waits for the first digit.
	FirstDigitTimeout time.Duration `mapstructure:"first_digit_timeout"`
	// InterDigitTimeout is how long the IVR waits between digits.
	InterDigitTimeout time.Duration `mapstructure:"inter_digit_timeout"`
	// Attempts is how many wrong or missing extensions end the call.
	Attempts int `mapstructure:"attempts"`
	// Answer is AnswerAnswer or AnswerEarly (collect digits in 183 early
	// media).
	Answer AnswerMode `mapstructure:"answer"`
	// Language selects the prompt set: "zh" or "en".
	Language string `mapstructure:"language"`
}

// Trunk is the trunk section.
type Trunk struct {
	// Outbound is the carrier's SIP URI, e.g. sip:203.0.113.10:5060;transport=udp.
	Outbound string `mapstructure:"outbound"`
	// Keepalive is how often an OPTIONS goes to Outbound; three
	// unanswered in a row count the trunk down (/readyz, vnum_trunk_up,
	// a WARN line). Zero sends none.
	Keepalive time.Duration `mapstructure:"keepalive"`
	// Username is the digest user if the carrier challenges.
	Username string `mapstructure:"username"`
	// Password is the digest password if the carrier challenges; a secret.
	Password string `mapstructure:"password"`
	// InboundCIDRs lists sources whose INVITEs are PSTN calls.
	InboundCIDRs []string `mapstructure:"inbound_cidrs"`
	// NumberFormat is how B is sent to the trunk: NumberFormatNational or
	// NumberFormatE164.
	NumberFormat NumberFormat `mapstructure:"number_format"`
}

// Binding is the binding section.
type Binding struct {
	// TTL is a binding's lifetime from creation.
	TTL time.Duration `mapstructure:"ttl"`
	// Quarantine is how long an ended (X, E) is not given out again.
	Quarantine time.Duration `mapstructure:"quarantine"`
}

// Calls is the calls section.
type Calls struct {
	// RingTimeout ends a call whose leg B does not answer in time.
	RingTimeout time.Duration `mapstructure:"ring_timeout"`
	// MaxDuration ends calls that last longer.
	MaxDuration time.Duration `mapstructure:"max_duration"`
	// DrainTimeout is how long calls may go on after SIGTERM.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
	// MaxActive is how many calls may be in progress before new ones get
	// 503; 0 leaves the limit to the free RTP ports.
	MaxActive int `mapstructure:"max_active"`
}

// Billing is the billing section.
type Billing struct {
	// Currency is the ISO 4217 code printed on bills.
	Currency string `mapstructure:"currency"`
	// RentalPerDay is the price of one binding-day, a decimal string.
	RentalPerDay string `mapstructure:"rental_per_day"`
	// PerMinute is the price of one billed minute, a decimal string.
	PerMinute string `mapstructure:"per_minute"`
	// Timezone is the IANA zone whose months bills follow.
	Timezone string `mapstructure:"timezone"`
}

// Store is the store section.
type Store struct {
	// Driver is "sqlite" or "postgres".
	Driver string `mapstructure:"driver"`
	// DSN is the data source: a file name for sqlite (a relative one in a
	// configuration file is taken from the file's directory, see Load), a
	// URL for postgres.
	DSN string `mapstructure:"dsn"`
	// Timeout bounds one store read or write; a call that cannot get its
	// answer in time is refused with 503.
	Timeout time.Duration `mapstructure:"timeout"`
	// Spool is the directory on this node's own disk where the ends of
	// calls the store did not take wait for it across a restart; empty
	// means the default SpoolDir names. A relative path in a
	// configuration file is taken from the file's directory (see Load).
	Spool string `mapstructure:"spool"`
}

// Node is the node section.
type Node struct {
	// ID is this node's name in CDRs; empty means the host name.
	ID string `mapstructure:"id"`
}

// Log is the log section.
type Log struct {
	// Level is the least severe level written: "debug", "info", "warn"
	// or "error"; ParseLogLevel reads it.
	Level string `mapstructure:"level"`
}

// Admin is the admin section.
type Admin struct {
	// Listen is the admin HTTP API's host:port; empty disables the API.
	Listen string `mapstructure:"listen"`
	// Token is the bearer token required on /v1 calls when set; a secret.
	Token string `mapstructure:"token"`
	// PProf serves Go's /debug/pprof on the admin listener, behind the token.
	PProf bool `mapstructure:"pprof"`
}

// defaults maps every key to its default.
func defaults() map[string]any {
	return map[string]any{
		"sip.listen":                   DefaultSIPListen(),
		"sip.public_host":              DefaultSIPPublicHost,
		"sip.tls_cert":                 DefaultSIPTLSCert,
		"sip.tls_key":                  DefaultSIPTLSKey,
		"sip.digest_algorithms":        DefaultDigestAlgorithms(),
		"security.auth_failures":       DefaultAuthFailures,
		"security.block_for":           DefaultBlockFor,
		"security.invite_rate":         DefaultInviteRate,
		"security.invalid_extensions":  DefaultInvalidExtensions,
		"media.ip":                     DefaultMediaIP,
		"media.rtp_ports":              DefaultRTPPorts,
		"media.timeout":                DefaultMediaTimeout,
		"media.kernel":                 DefaultMediaKernel,
		"ivr.extension_digits":         DefaultExtensionDigits,
		"ivr.first_digit_timeout":      DefaultFirstDigitTimeout,
		"ivr.inter_digit_timeout":      DefaultInterDigitTimeout,
		"ivr.attempts":                 DefaultIVRAttempts,
		"ivr.answer":                   DefaultIVRAnswer,
		"ivr.language":                 DefaultIVRLanguage,
		"trunk.outbound":               DefaultTrunkOutbound,
		"trunk.keepalive":              DefaultTrunkKeepalive,
		"trunk.username":               DefaultTrunkUsername,
		"trunk.password":               DefaultTrunkPassword,
		"trunk.inbound_cidrs":          []string{},
		"trunk.number_format":          DefaultTrunkNumberFormat,
		"binding.ttl":                  DefaultBindingTTL,
		"binding.quarantine":           DefaultBindingQuarantine,
		"calls.ring_timeout":           DefaultRingTimeout,
		"calls.max_duration":           DefaultMaxDuration,
		"calls.drain_timeout":          DefaultDrainTimeout,
		"calls.max_active":             DefaultMaxActive,
		"billing.currency":             DefaultBillingCurrency,
		"billing.rental_per_day":       DefaultBillingRentalPerDay,
		"billing.per_minute":           DefaultBillingPerMinute,
		"billing.timezone":             DefaultBillingTimezone,
		"store.driver":                 DefaultStoreDriver,
		"store.dsn":                    DefaultStoreDSN,
		"store.timeout":                DefaultStoreTimeout,
		"store.spool":                  DefaultStoreSpool,
		"node.id":                      DefaultNodeID,
		"protection.timezone":          DefaultProtectionTimezone,
		"protection.quiet_hours":       DefaultQuietHours,
		"protection.calls_per_day":     DefaultCallsPerDay,
		"protection.calls_per_binding": DefaultCallsPerBinding,
		"protection.announce":          DefaultAnnounce,
		"protection.confirm_timeout":   DefaultConfirmTimeout,
		"protection.block_key":         DefaultBlockKey,
		"protection.after_close":       DefaultAfterClose,
		"log.level":                    DefaultLogLevel,
		"admin.listen":                 DefaultAdminListen,
		"admin.token":                  DefaultAdminToken,
		"admin.pprof":                  DefaultAdminPProf,
		"events.timeout":               DefaultEventsTimeout,
		"events.retries":               DefaultEventsRetries(),
		"events.allow_private":         DefaultEventsAllowPrivate,
		"recording.mode":               string(DefaultRecordingMode),
		"recording.dir":                DefaultRecordingDir,
		"recording.keep":               DefaultRecordingKeep,
	}
}

// Default returns the configuration with every key at its default,
// ignoring files and the environment.
func Default() *Config {
	c := &Config{
		SIP: SIP{
			Listen:           DefaultSIPListen(),
			PublicHost:       DefaultSIPPublicHost,
			TLSCert:          DefaultSIPTLSCert,
			TLSKey:           DefaultSIPTLSKey,
			DigestAlgorithms: DefaultDigestAlgorithms(),
		},
		Security: Security{
			AuthFailures:      DefaultAuthFailures,
			BlockFor:          DefaultBlockFor,
			InviteRate:        DefaultInviteRate,
			InvalidExtensions: DefaultInvalidExtensions,
		},
		Media: Media{IP: DefaultMediaIP, RTPPorts: DefaultRTPPorts, Timeout: DefaultMediaTimeout, Kernel: DefaultMediaKernel},
		IVR: IVR{
			ExtensionDigits:   DefaultExtensionDigits,
			FirstDigitTimeout: DefaultFirstDigitTimeout,
			InterDigitTimeout: DefaultInterDigitTimeout,
			Attempts:          DefaultIVRAttempts,
			Answer:            DefaultIVRAnswer,
			Language:          DefaultIVRLanguage,
		},
		Trunk: Trunk{
			Outbound:     DefaultTrunkOutbound,
			Keepalive:    DefaultTrunkKeepalive,
			Username:     DefaultTrunkUsername,
			Password:     DefaultTrunkPassword,
			InboundCIDRs: []string{},
			NumberFormat: DefaultTrunkNumberFormat,
		},
		Binding: Binding{TTL: DefaultBindingTTL, Quarantine: DefaultBindingQuarantine},
		Calls: Calls{
			RingTimeout:  DefaultRingTimeout,
			MaxDuration:  DefaultMaxDuration,
			DrainTimeout: DefaultDrainTimeout,
			MaxActive:    DefaultMaxActive,
		},
		Billing: Billing{
			Currency:     DefaultBillingCurrency,
			RentalPerDay: DefaultBillingRentalPerDay,
			PerMinute:    DefaultBillingPerMinute,
			Timezone:     DefaultBillingTimezone,
		},
		Store: Store{Driver: DefaultStoreDriver, DSN: DefaultStoreDSN, Timeout: DefaultStoreTimeout, Spool: DefaultStoreSpool},
		Node:  Node{ID: DefaultNodeID},
		Protection: Protection{
			Timezone:        DefaultProtectionTimezone,
			QuietHours:      DefaultQuietHours,
			CallsPerDay:     DefaultCallsPerDay,
			CallsPerBinding: DefaultCallsPerBinding,
			Announce:        DefaultAnnounce,
			ConfirmTimeout:  DefaultConfirmTimeout,
			BlockKey:        DefaultBlockKey,
			AfterClose:      DefaultAfterClose,
		},
		Log:   Log{Level: DefaultLogLevel},
		Admin: Admin{Listen: DefaultAdminListen, Token: DefaultAdminToken, PProf: DefaultAdminPProf},
	}
	c.Events = Events{Timeout: DefaultEventsTimeout, Retries: DefaultEventsRetries(), AllowPrivate: DefaultEventsAllowPrivate}
	c.Recording = Recording{Mode: DefaultRecordingMode, Dir: DefaultRecordingDir, Keep: DefaultRecordingKeep}
	c.normalise()
	return c
}

// Load builds the configuration from the defaults, then the YAML file (when
// file is non-empty), then VNUM_* environment variables (the process's,
// unless WithEnviron gives others). A VNUM_ variable that names no key is
// refused like an unknown key in the file. A relative SQLite store.dsn
// from the file (or the default, when a file is given) is taken from the
// file's directory; one from VNUM_STORE_DSN, or the default without a
// file, from the working directory. A relative store.spool is taken the
// same way. Load does not validate; call Validate
// on the result.
func Load(file string, opts ...Option) (*Config, error) {
	o := loadOptions{environ: defaultEnviron}
	for _, opt := range opts {
		opt(&o)
	}
	v := viper.New()
	for k, val := range defaults() {
		v.SetDefault(k, val)
	}
	if file != "" {
		if err := checkFile(file); err != nil {
			return nil, fmt.Errorf("config %s: %w", file, err)
		}
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config %s: %w", file, err)
		}
	}
	env, err := envValues(o.environ())
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// Set overrides the file and the defaults, as the environment should.
	for key, val := range env {
		v.Set(key, val)
	}
	var c Config
	hook := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		splitDurations,
		durationNeedsUnit,
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	))
	if err := v.UnmarshalExact(&c, hook); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.normalise()
	_, dsnFromEnv := env["store.dsn"]
	if err := c.resolveStoreDSN(file, dsnFromEnv); err != nil {
		return nil, fmt.Errorf("store.dsn: %w", err)
	}
	_, spoolFromEnv := env["store.spool"]
	if err := c.resolveSpool(file, spoolFromEnv); err != nil {
		return nil, fmt.Errorf("store.spool: %w", err)
	}
	_, dirFromEnv := env["recording.dir"]
	// A relative recording.dir is taken as store.spool is.
	if err := resolveFromFile(&c.Recording.Dir, file, dirFromEnv); err != nil {
		return nil, fmt.Errorf("recording.dir: %w", err)
	}
	return &c, nil
}

// durationNeedsUnit refuses to decode anything but a string (or a
// time.Duration default) into a time.Duration: mapstructure would read a
// bare YAML number as nanoseconds, so `ttl: 720` would expire every binding
// at its creation. A string without a unit is refused too.
func durationNeedsUnit(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType {
		return data, nil
	}
	s, ok := data.(string)
	if !ok || !hasUnit(s) {
		return nil, fmt.Errorf("got %v, want a duration with a unit (90s, 15m, 720h)", data)
	}
	// The entries of a list from the environment ("10s, 1m") keep the
	// space after each comma.
	return strings.TrimSpace(s), nil
}

// normalise trims list entries (an env value "a, b" splits into "a", " b").
func (c *Config) normalise() {
	c.SIP.Listen = trimList(c.SIP.Listen)
	c.SIP.DigestAlgorithms = trimList(c.SIP.DigestAlgorithms)
	c.Trunk.InboundCIDRs = trimList(c.Trunk.InboundCIDRs)
}

func trimList(xs []string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
