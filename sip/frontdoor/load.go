package frontdoor

import (
	"net/netip"
	"sync"
	"time"
)

// sourceLoad counts each source address's new INVITEs over the current
// and the previous second, so that a saturated process can tell the
// sources sending the most from those sending little.
type sourceLoad struct {
	now func() time.Time

	mu          sync.Mutex
	start       time.Time // of the current second
	cur, prev   map[netip.Addr]int
	curN, prevN int
}

func newSourceLoad(now func() time.Time) *sourceLoad {
	if now == nil {
		now = time.Now
	}
	return &sourceLoad{now: now, cur: make(map[netip.Addr]int), prev: make(map[netip.Addr]int)}
}

// light counts one new INVITE from src and reports whether src sends less
// than half the mean of the sources seen in the last two seconds. A lone
// source is never light; nor, past maxRateSources sources in a second, is
// one not yet counted (a flood from spoofed addresses grows no memory).
func (l *sourceLoad) light(src netip.Addr) bool { return l.judge(src, true) }

// isLight is light for an INVITE already counted.
func (l *sourceLoad) isLight(src netip.Addr) bool { return l.judge(src, false) }

func (l *sourceLoad) judge(src netip.Addr, count bool) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := now.Sub(l.start); d >= time.Second || d < 0 {
		l.prev, l.cur = l.cur, l.prev
		l.prevN, l.curN = l.curN, 0
		clear(l.cur)
		if d >= 2*time.Second || d < 0 {
			clear(l.prev) // a quiet second in between
			l.prevN = 0
		}
		l.start = now
	}
	if !count {
		if l.cur[src]+l.prev[src] == 0 {
			return false // not seen: no share to judge by
		}
	} else {
		if _, ok := l.cur[src]; !ok && len(l.cur) >= maxRateSources {
			return false
		}
		l.cur[src]++
		l.curN++
	}
	mine, total := l.cur[src]+l.prev[src], l.curN+l.prevN
	sources := max(len(l.cur), len(l.prev))
	return 2*mine*sources < total
}
