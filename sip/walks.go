package sip

import (
	"sync"
	"time"
)

// walkWindow is the sliding window of security.invalid_extensions (vnum.example.yaml).
const walkWindow = time.Hour

// walkSweepEvery is how often callers whose wrong extensions have all left
// the window are forgotten, so memory is bounded by the callers of the last
// hour.
const walkSweepEvery = time.Minute

// walkLimit counts the wrong extensions each caller keys in a sliding hour
// (security.invalid_extensions): a caller that reaches the limit has the
// call it is in ended and its new calls refused with 403 until its oldest
// wrong extension of the hour is an hour old. It stops one caller from
// walking the extensions of a host number to find bindings. A limit of 0
// limits nothing.
type walkLimit struct {
	now func() time.Time

	mu    sync.Mutex
	limit int
	wrong map[string][]time.Time // per caller, oldest first, at most limit
	swept time.Time
}

func newWalkLimit(limit int, now func() time.Time) *walkLimit {
	if now == nil {
		now = time.Now
	}
	return &walkLimit{limit: max(limit, 0), now: now, wrong: make(map[string][]time.Time)}
}

// setLimit changes the limit (0: none); what callers keyed so far counts
// under the new one.
func (w *walkLimit) setLimit(limit int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.limit = max(limit, 0)
}

// walkKey is who a call's wrong extensions count against: the account for
// a merchant's softphone (an authenticated identity; offices share one
// address behind NAT, so the source address would punish colleagues), the
// calling number for a trunk caller (every PSTN call comes from the
// carrier's few addresses). Trunk callers with no valid number share one
// key: withholding the number must not make walking free.
func walkKey(acct Account, trunk bool, number string) string {
	switch {
	case !trunk:
		return "account:" + acct.User
	case number != "":
		return "number:" + number
	}
	return "number:withheld"
}

// blocked reports whether caller has keyed the limit of wrong extensions
// within the last hour.
func (w *walkLimit) blocked(caller string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limit == 0 {
		return false
	}
	now := w.now()
	w.sweep(now)
	return len(w.recent(caller, now)) >= w.limit
}

// wrongExtension records one wrong extension keyed by caller and reports
// whether the caller has now reached the limit.
func (w *walkLimit) wrongExtension(caller string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limit == 0 {
		return false
	}
	now := w.now()
	w.sweep(now)
	times := append(w.recent(caller, now), now)
	if len(times) > w.limit {
		times = times[len(times)-w.limit:]
	}
	w.wrong[caller] = times
	return len(times) >= w.limit
}

// recent drops caller's wrong extensions older than the window and returns
// the rest. The caller holds mu.
func (w *walkLimit) recent(caller string, now time.Time) []time.Time {
	times := w.wrong[caller]
	i := 0
	for i < len(times) && now.Sub(times[i]) >= walkWindow {
		i++
	}
	if i == len(times) {
		delete(w.wrong, caller)
		return nil
	}
	if i > 0 {
		times = append(times[:0], times[i:]...)
		w.wrong[caller] = times
	}
	return times
}

// sweep forgets the callers whose wrong extensions have all left the
// window, at most once per walkSweepEvery. The caller holds mu.
func (w *walkLimit) sweep(now time.Time) {
	if now.Sub(w.swept) < walkSweepEvery {
		return
	}
	w.swept = now
	for caller, times := range w.wrong {
		if len(times) == 0 || now.Sub(times[len(times)-1]) >= walkWindow {
			delete(w.wrong, caller)
		}
	}
}

// callers is how many callers the limit remembers (for tests).
func (w *walkLimit) callers() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.wrong)
}
