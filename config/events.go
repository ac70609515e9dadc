package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Defaults of the events section (vnum.example.yaml).
const (
	DefaultEventsTimeout      = 5 * time.Second
	DefaultEventsAllowPrivate = false
)

// DefaultEventsRetries returns the default events.retries: tried again
// after 10 s, 1 min, 5 min, 30 min, 2 h and 6 h, about eight and a half
// hours in all, before an event is failed.
func DefaultEventsRetries() []time.Duration {
	return []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 6 * time.Hour}
}

// The bounds of the events section.
const (
	// maxEventsTimeout bounds one delivery attempt: a worker waits that
	// long at most for one receiver.
	maxEventsTimeout = time.Minute
	// maxEventsRetry and maxEventsRetries bound the schedule: a wait of
	// two days, twenty of them.
	maxEventsRetry   = 48 * time.Hour
	maxEventsRetries = 20
)

// durationsType is the type of a key that lists durations (events.retries).
var durationsType = reflect.TypeFor[[]time.Duration]()

// Events is the events section: how call events are delivered to the
// merchants' webhooks.
type Events struct {
	// Timeout bounds one delivery attempt: a 2xx answer must come within
	// it.
	Timeout time.Duration `mapstructure:"timeout"`
	// Retries are the waits before attempts 2, 3, ...: after the last the
	// event is failed (kept, listed, retried by hand). Empty: one attempt.
	Retries []time.Duration `mapstructure:"retries"`
	// AllowPrivate lets events go to loopback and private addresses
	// (tests, a platform on its own network); otherwise a webhook whose
	// host is or resolves to one is refused, at registration and at each
	// delivery.
	AllowPrivate bool `mapstructure:"allow_private"`
}

// validateEvents checks the events section.
func (c *Config) validateEvents(k *keyProblems) {
	k.positive("events.timeout", c.Events.Timeout)
	if c.Events.Timeout > maxEventsTimeout {
		k.bad("events.timeout", "got %s, want at most %s: a worker waits that long for one receiver",
			FormatDuration(c.Events.Timeout), FormatDuration(maxEventsTimeout))
	}
	if len(c.Events.Retries) > maxEventsRetries {
		k.bad("events.retries", "lists %d waits, want at most %d", len(c.Events.Retries), maxEventsRetries)
	}
	for _, d := range c.Events.Retries {
		if d <= 0 || d > maxEventsRetry {
			k.bad("events.retries", "got %s, want waits above 0s and at most %s", FormatDuration(d), FormatDuration(maxEventsRetry))
			break
		}
	}
}

// checkDurations checks a raw value for a list of durations: a YAML list,
// or from the environment the entries separated by commas, each with a
// unit.
func checkDurations(key string, val any) error {
	var items []any
	switch v := val.(type) {
	case nil:
	case string:
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
	case []any:
		items = v
	default:
		items = []any{v}
	}
	for _, x := range items {
		s, ok := x.(string)
		if _, err := time.ParseDuration(strings.TrimSpace(s)); !ok || err != nil || !hasUnit(s) {
			return &KeyError{Key: key, Reason: fmt.Sprintf("got %s, want a list of durations with a unit, e.g. [10s, 1m, 5m]", show(x))}
		}
	}
	return nil
}

// splitDurations reads a list of durations from the environment, where it
// is one string, its entries separated by commas ("10s, 1m"):
// mapstructure's own string-to-slice hook makes only []string.
func splitDurations(from, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if to != durationsType || !ok {
		return data, nil
	}
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out, nil
}
