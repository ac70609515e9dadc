package config

import (
	"strings"
	"time"

	"github.com/vnum/vnum/protection"
)

// Defaults of the protection section: a platform that protects nothing
// until the operator says so, beyond ending a closed order's calls after
// 15 days and the consignee's block key during a call.
const (
	DefaultProtectionTimezone = "Asia/Shanghai"
	DefaultQuietHours         = ""
	DefaultCallsPerDay        = 0
	DefaultCallsPerBinding    = 0
	DefaultAnnounce           = "off"
	DefaultConfirmTimeout     = 10 * time.Second
	DefaultBlockKey           = "*9"
	DefaultAfterClose         = 360 * time.Hour
)

// MaxBlockKey is the longest block key: a few keys a consignee can type
// in a call without thinking.
const MaxBlockKey = 4

// Protection is the protection section: the platform's consignee
// protection, which a merchant may only make stricter. A running server
// takes it anew on SIGHUP.
type Protection struct {
	// Timezone is the IANA zone of the consignee's clock: local days for
	// calls_per_day, and quiet_hours.
	Timezone string `mapstructure:"timezone"`
	// QuietHours is the daily window in which no call rings a consignee,
	// "HH:MM-HH:MM" (it may wrap midnight, "21:00-08:00"); "" is none.
	QuietHours string `mapstructure:"quiet_hours"`
	// CallsPerDay caps the calls that ring one consignee per local day
	// from one caller (a merchant with all its accounts, or one PSTN
	// number); 0 is no cap.
	CallsPerDay int `mapstructure:"calls_per_day"`
	// CallsPerBinding caps the calls that ring the consignee over one
	// binding's life, every caller together; 0 is no cap.
	CallsPerBinding int `mapstructure:"calls_per_binding"`
	// Announce is what the consignee hears before the bridge: off,
	// inform or confirm.
	Announce string `mapstructure:"announce"`
	// ConfirmTimeout is how long the consignee has to key an answer to a
	// confirm notice; no key in time declines the call.
	ConfirmTimeout time.Duration `mapstructure:"confirm_timeout"`
	// BlockKey, keyed by the consignee during a call, ends it and blocks
	// the caller: DTMF digits, * and #, at most MaxBlockKey; "" is none.
	BlockKey string `mapstructure:"block_key"`
	// AfterClose is how long calls go on working after an order was
	// closed; after_sale before then lifts the end.
	AfterClose time.Duration `mapstructure:"after_close"`
}

// validateProtection checks the protection section.
func (c *Config) validateProtection(k *keyProblems) {
	p := c.Protection
	if _, err := time.LoadLocation(p.Timezone); err != nil || p.Timezone == "" {
		k.bad("protection.timezone", "unknown time zone %q, want an IANA zone such as Asia/Shanghai", p.Timezone)
	}
	if _, err := protection.ParseWindow(p.QuietHours); err != nil {
		k.bad("protection.quiet_hours", "got %q, want HH:MM-HH:MM on a 24-hour clock such as 21:00-08:00, or \"\" for none",
			p.QuietHours)
	}
	if p.CallsPerDay < 0 {
		k.bad("protection.calls_per_day", "must be 0 (no cap) or more, got %d", p.CallsPerDay)
	}
	if p.CallsPerBinding < 0 {
		k.bad("protection.calls_per_binding", "must be 0 (no cap) or more, got %d", p.CallsPerBinding)
	}
	if a, err := protection.ParseAnnounce(p.Announce); err != nil || a == protection.AnnounceUnset {
		k.bad("protection.announce", "must be off, inform or confirm, got %q", p.Announce)
	}
	k.positive("protection.confirm_timeout", p.ConfirmTimeout)
	if len(p.BlockKey) > MaxBlockKey || strings.Trim(p.BlockKey, "0123456789*#") != "" {
		k.bad("protection.block_key", "got %q, want up to %d of the keys 0-9, * and # (such as *9), or \"\" for none",
			p.BlockKey, MaxBlockKey)
	}
	k.positive("protection.after_close", p.AfterClose)
}

// Platform returns the section as the protection package applies it. It
// is called on a validated configuration; a value Validate refuses is
// returned as an error naming its key all the same.
func (p Protection) Platform() (protection.Platform, error) {
	loc, err := time.LoadLocation(p.Timezone)
	if err != nil || p.Timezone == "" {
		return protection.Platform{}, &KeyError{Key: "protection.timezone", Reason: "unknown time zone " + p.Timezone}
	}
	w, err := protection.ParseWindow(p.QuietHours)
	if err != nil {
		return protection.Platform{}, &KeyError{Key: "protection.quiet_hours", Reason: err.Error()}
	}
	a, err := protection.ParseAnnounce(p.Announce)
	if err != nil || a == protection.AnnounceUnset {
		return protection.Platform{}, &KeyError{Key: "protection.announce", Reason: "want off, inform or confirm"}
	}
	return protection.Platform{
		Location: loc, QuietHours: w, CallsPerDay: p.CallsPerDay, CallsPerBinding: p.CallsPerBinding,
		Announce: a, ConfirmTimeout: p.ConfirmTimeout, BlockKey: p.BlockKey, AfterClose: p.AfterClose,
	}, nil
}
