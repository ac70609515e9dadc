package protection

import (
	"fmt"
	"time"

	"github.com/vnum/vnum/callrec"
)

// Verdict is what protection decides about a call about to ring the
// consignee.
type Verdict int

// Verdicts, in the order Decide considers them: the first that applies is
// the one given.
const (
	// Allow lets the call ring the consignee.
	Allow Verdict = iota
	// Restricted refuses a call the binding does not take (one way).
	Restricted
	// Blocked refuses a caller the consignee or an operator blocked.
	Blocked
	// QuietHours refuses a call inside a quiet window.
	QuietHours
	// Capped refuses a call past a cap.
	Capped
)

// verdictNames are the verdicts as logs, metrics and CDRs name them.
var verdictNames = [...]string{Allow: "allow", Restricted: "restricted", Blocked: "blocked",
	QuietHours: "quiet_hours", Capped: "capped"}

// String returns the verdict's name: allow, restricted, blocked,
// quiet_hours or capped, the reasons of vnum_calls_protected_total.
func (v Verdict) String() string {
	if v < 0 || int(v) >= len(verdictNames) {
		return fmt.Sprintf("Verdict(%d)", int(v))
	}
	return verdictNames[v]
}

// Disposition returns the CDR disposition of a call refused so, or ""
// for Allow.
func (v Verdict) Disposition() callrec.Disposition {
	switch v {
	case Restricted:
		return callrec.DispositionRestricted
	case Blocked:
		return callrec.DispositionBlocked
	case QuietHours:
		return callrec.DispositionQuietHours
	case Capped:
		return callrec.DispositionCapped
	}
	return ""
}

// Facts are what Decide needs to know of one call besides the policy: the
// time, and what the store keeps.
type Facts struct {
	// Now is the time the call would ring the consignee.
	Now time.Time
	// Restricted is set when the binding takes no calls to the consignee.
	Restricted bool
	// Blocked is set when the caller is blocked for this consignee.
	Blocked bool
	// Today counts the calls from this caller that rang this consignee in
	// the local day of Now (Policy.Day), over all the merchant's bindings
	// to them.
	Today int
	// Binding counts the calls that rang the consignee over this
	// binding's life, from every caller.
	Binding int
}

// Decision is Decide's answer, with the policy it applied: a call that
// is allowed goes on under that policy (its announce mode, the consignee's
// keys).
type Decision struct {
	// Verdict is what was decided.
	Verdict Verdict
	// Reason says why in one line for the log; it names no number.
	Reason string
	// Policy is the effective policy the decision applied.
	Policy Policy
}

// Allowed reports whether the call may ring the consignee.
func (d Decision) Allowed() bool { return d.Verdict == Allow }

// Decide applies p to a call: restricted, blocked, quiet hours, then the
// caps, the first that applies refusing the call. A cap of n lets n calls
// ring and refuses the next.
func Decide(p Policy, f Facts) Decision {
	d := Decision{Policy: p}
	local := f.Now.In(p.location())
	switch {
	case f.Restricted:
		d.Verdict, d.Reason = Restricted, "the binding takes no calls to the consignee (calls from_consignee)"
	case f.Blocked:
		d.Verdict, d.Reason = Blocked, "this caller is blocked for this consignee"
	default:
		if w, ok := p.Quiet(f.Now); ok {
			d.Verdict = QuietHours
			d.Reason = fmt.Sprintf("quiet hours %s in %s (%s there now)", w, p.location(), local.Format("15:04"))
			return d
		}
		switch {
		case p.CallsPerDay > 0 && f.Today >= p.CallsPerDay:
			d.Verdict = Capped
			d.Reason = fmt.Sprintf("calls_per_day %d reached: this caller has rung this consignee %d times on %s (%s)",
				p.CallsPerDay, f.Today, local.Format(time.DateOnly), p.location())
		case p.CallsPerBinding > 0 && f.Binding >= p.CallsPerBinding:
			d.Verdict = Capped
			d.Reason = fmt.Sprintf("calls_per_binding %d reached: the binding has rung its consignee %d times",
				p.CallsPerBinding, f.Binding)
		default:
			d.Verdict, d.Reason = Allow, "allowed"
		}
	}
	return d
}

// Quiet returns the quiet window that now lies in, in the consignee's
// clock, if any.
func (p Policy) Quiet(now time.Time) (Window, bool) {
	local := now.In(p.location())
	for _, w := range p.QuietHours {
		if w.Contains(local) {
			return w, true
		}
	}
	return Window{}, false
}

// Day returns the local day of now in the consignee's clock: its first
// instant and the first instant of the next day. A day on which the
// clocks change is 23 or 25 hours long.
func (p Policy) Day(now time.Time) (start, end time.Time) {
	loc := p.location()
	y, m, d := now.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// location is the consignee's clock, UTC when none was given.
func (p Policy) location() *time.Location {
	if p.Location == nil {
		return time.UTC
	}
	return p.Location
}
