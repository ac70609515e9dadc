package protection

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// minutesPerDay is the length of a wall-clock day in minutes; a window
// may end at 24:00, which is this.
const minutesPerDay = 24 * 60

// Window is a daily quiet window on the consignee's wall clock: from Start
// (included) to End (excluded), in minutes after midnight. A window whose
// End is not after its Start wraps midnight: "21:00-08:00" is quiet from
// nine in the evening to eight in the morning. The zero Window is none.
type Window struct {
	// Start is the first quiet minute after midnight, 0 to 1439.
	Start int
	// End is the first minute after the window, 0 to 1440 (24:00).
	End int
}

// ParseWindow reads a quiet window as the configuration and the API
// write it, "HH:MM-HH:MM" on a 24-hour clock ("21:00-08:00"; the end may
// be 24:00). The empty string is no window. A start equal to the end is
// refused: it could mean no minute or every minute.
func ParseWindow(s string) (Window, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Window{}, nil
	}
	bad := func(why string) (Window, error) {
		return Window{}, fmt.Errorf("%w quiet hours %q: %s", ErrInvalid, s, why)
	}
	a, b, ok := strings.Cut(t, "-")
	if !ok {
		return bad("want HH:MM-HH:MM on a 24-hour clock, such as 21:00-08:00")
	}
	start, ok1 := clockMinutes(strings.TrimSpace(a), false)
	end, ok2 := clockMinutes(strings.TrimSpace(b), true)
	if !ok1 || !ok2 {
		return bad("want HH:MM-HH:MM on a 24-hour clock, such as 21:00-08:00")
	}
	if start == end {
		return bad("the window starts where it ends; give a window such as 21:00-08:00, or \"\" for none")
	}
	return Window{Start: start, End: end}, nil
}

// clockMinutes reads "HH:MM" as minutes after midnight; 24:00 is allowed
// when end is true.
func clockMinutes(s string, end bool) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || h[0] == '+' || m[0] == '+' {
		return 0, false
	}
	switch {
	case hh < 24:
		return hh*60 + mm, true
	case hh == 24 && mm == 0 && end:
		return minutesPerDay, true
	}
	return 0, false
}

// IsZero reports whether w is no window at all.
func (w Window) IsZero() bool { return w == Window{} }

// String writes w as ParseWindow reads it, or "" for none.
func (w Window) String() string {
	if w.IsZero() {
		return ""
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.Start/60, w.Start%60, w.End/60, w.End%60)
}

// Contains reports whether the wall-clock time of t, in t's own location,
// lies in the window. The caller puts t in the consignee's zone
// (protection.timezone); a day on which the clocks change has its hours
// as the wall clock shows them.
func (w Window) Contains(t time.Time) bool {
	if w.IsZero() {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	if w.Start < w.End {
		return w.Start <= m && m < w.End
	}
	return m >= w.Start || m < w.End
}
