package protection

import (
	"fmt"
	"strings"
	"time"
)

// Announce says what the consignee hears once they answer and before the
// call is bridged. Its values are ordered from the least to the most
// protective, so the stricter of two is the greater.
type Announce int

// Announce modes.
const (
	// AnnounceUnset is a merchant's protection that leaves the mode to
	// the platform.
	AnnounceUnset Announce = iota
	// AnnounceOff bridges the call as soon as the consignee answers.
	AnnounceOff
	// AnnounceInform tells the consignee who calls, and about which
	// order, then bridges.
	AnnounceInform
	// AnnounceConfirm tells them the same, then lets them take the call
	// (1), decline it (2) or block the caller (9).
	AnnounceConfirm
)

// announceNames are the modes as the configuration, the API and the CLI
// write them, by value.
var announceNames = [...]string{AnnounceUnset: "", AnnounceOff: "off", AnnounceInform: "inform", AnnounceConfirm: "confirm"}

// ParseAnnounce reads an announce mode: off, inform or confirm; "" is
// AnnounceUnset.
func ParseAnnounce(s string) (Announce, error) {
	for a, name := range announceNames {
		if s == name {
			return Announce(a), nil
		}
	}
	return AnnounceUnset, fmt.Errorf("%w announce %q: want off, inform or confirm", ErrInvalid, s)
}

// String returns the mode as ParseAnnounce reads it.
func (a Announce) String() string {
	if a < 0 || int(a) >= len(announceNames) {
		return fmt.Sprintf("Announce(%d)", int(a))
	}
	return announceNames[a]
}

// Platform is the protection the operator configures (the protection
// section of the configuration), which applies to every merchant.
type Platform struct {
	// Location is the consignee's clock: local days for the daily cap,
	// and quiet hours (protection.timezone). Nil means UTC.
	Location *time.Location
	// QuietHours is the window in which no call rings a consignee.
	QuietHours Window
	// CallsPerDay caps the calls that ring one consignee per local day
	// from one caller; 0 is no cap.
	CallsPerDay int
	// CallsPerBinding caps the calls that ring the consignee over one
	// binding's life, every caller together; 0 is no cap.
	CallsPerBinding int
	// Announce is what the consignee hears before the bridge.
	Announce Announce
	// ConfirmTimeout is how long a consignee has to key an answer to a
	// confirm notice before the call counts as declined.
	ConfirmTimeout time.Duration
	// BlockKey ends a bridged call and blocks its caller when the
	// consignee keys it; "" is none.
	BlockKey string
	// AfterClose is how long a binding keeps working after its order was
	// closed.
	AfterClose time.Duration
}

// Own is a merchant's own protection, which can only make the platform's
// stricter. Its zero value adds nothing.
type Own struct {
	// QuietHours is a window of the merchant's own, quiet besides the
	// platform's: a call is refused in either.
	QuietHours Window
	// CallsPerDay is the merchant's daily cap, 0 for the platform's.
	CallsPerDay int
	// CallsPerBinding is the merchant's cap per binding, 0 for the
	// platform's.
	CallsPerBinding int
	// Announce is the merchant's mode, AnnounceUnset for the platform's.
	Announce Announce
	// Record asks for the merchant's calls to be recorded (where the
	// platform records as merchants choose).
	Record bool
}

// Valid reports ErrInvalid for a negative cap or an unknown mode.
func (o Own) Valid() error {
	var bad []string
	if o.CallsPerDay < 0 {
		bad = append(bad, fmt.Sprintf("calls_per_day %d: want 0 (the platform's) or more", o.CallsPerDay))
	}
	if o.CallsPerBinding < 0 {
		bad = append(bad, fmt.Sprintf("calls_per_binding %d: want 0 (the platform's) or more", o.CallsPerBinding))
	}
	if o.Announce < AnnounceUnset || o.Announce > AnnounceConfirm {
		bad = append(bad, fmt.Sprintf("announce %s: want off, inform or confirm", o.Announce))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(bad, "; "))
	}
	return nil
}

// Check returns ErrLooser, naming every part and the platform's value,
// when some part of o is looser than p: a higher cap where the platform
// caps, or a weaker announce mode. A quiet window of its own is never
// looser: it adds to the platform's.
func (o Own) Check(p Platform) error {
	if err := o.Valid(); err != nil {
		return err
	}
	var bad []string
	looserCap := func(key string, own, platform int) {
		if own > 0 && platform > 0 && own > platform {
			bad = append(bad, fmt.Sprintf("%s %d is above the platform's %d", key, own, platform))
		}
	}
	looserCap("calls_per_day", o.CallsPerDay, p.CallsPerDay)
	looserCap("calls_per_binding", o.CallsPerBinding, p.CallsPerBinding)
	if o.Announce != AnnounceUnset && o.Announce < p.Announce {
		bad = append(bad, fmt.Sprintf("announce %s is weaker than the platform's %s", o.Announce, p.Announce))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s (a merchant may only make protection stricter)", ErrLooser, strings.Join(bad, "; "))
	}
	return nil
}

// Parts names the parts of the effective policy that o makes stricter
// than p alone, by their API field names: what the merchant's own
// protection changes.
func (o Own) Parts(p Platform) []string {
	var out []string
	if !o.QuietHours.IsZero() && o.QuietHours != p.QuietHours {
		out = append(out, "quiet_hours")
	}
	if o.CallsPerDay > 0 && (p.CallsPerDay == 0 || o.CallsPerDay < p.CallsPerDay) {
		out = append(out, "calls_per_day")
	}
	if o.CallsPerBinding > 0 && (p.CallsPerBinding == 0 || o.CallsPerBinding < p.CallsPerBinding) {
		out = append(out, "calls_per_binding")
	}
	if o.Announce > p.Announce {
		out = append(out, "announce")
	}
	if o.Record {
		out = append(out, "record")
	}
	return out
}

// Policy is the protection in force for one merchant's calls: the
// platform's made stricter by the merchant's own.
type Policy struct {
	// Location is the consignee's clock (never nil in a Policy made by
	// Effective).
	Location *time.Location
	// QuietHours are the windows in which no call rings: the platform's
	// and the merchant's, either one refusing.
	QuietHours []Window
	// CallsPerDay is the lower of the two daily caps; 0 is no cap.
	CallsPerDay int
	// CallsPerBinding is the lower of the two caps per binding; 0 is no cap.
	CallsPerBinding int
	// Announce is the stronger of the two modes, never AnnounceUnset.
	Announce Announce
	// Record is the merchant's wish to have its calls recorded.
	Record bool
	// ConfirmTimeout is the platform's time to answer a confirm notice.
	ConfirmTimeout time.Duration
	// BlockKey is the platform's key that blocks during a call.
	BlockKey string
}

// Effective returns the policy in force for a merchant whose own
// protection is o: the stricter of the two in every part.
func Effective(p Platform, o Own) Policy {
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	var windows []Window
	for _, w := range []Window{p.QuietHours, o.QuietHours} {
		if !w.IsZero() && (len(windows) == 0 || windows[0] != w) {
			windows = append(windows, w)
		}
	}
	return Policy{
		Location:        loc,
		QuietHours:      windows,
		CallsPerDay:     lowerCap(p.CallsPerDay, o.CallsPerDay),
		CallsPerBinding: lowerCap(p.CallsPerBinding, o.CallsPerBinding),
		Announce:        max(p.Announce, o.Announce, AnnounceOff),
		Record:          o.Record,
		ConfirmTimeout:  p.ConfirmTimeout,
		BlockKey:        p.BlockKey,
	}
}

// lowerCap is the stricter of two caps, where 0 is no cap.
func lowerCap(a, b int) int {
	switch {
	case a <= 0:
		return max(b, 0)
	case b <= 0:
		return a
	}
	return min(a, b)
}

// Counting reports whether a cap is in force, so that the calls that
// ring must be counted. Calls are counted only then: a store under no cap
// writes nothing per call for protection, and a cap switched on counts
// the calls from that moment.
func (p Policy) Counting() bool { return p.CallsPerDay > 0 || p.CallsPerBinding > 0 }
