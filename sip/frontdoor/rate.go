package frontdoor

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxRateSources bounds the sources inviteRate remembers: past it, after
// a sweep, a source it does not know is refused (a flood from spoofed
// addresses must not grow memory without end).
const maxRateSources = 1 << 16

// inviteRate is security.invite_rate: a token bucket per source address
// (golang.org/x/time/rate) holding up to one second's INVITEs and refilled
// at the rate per second. A bucket left alone for a second is full again,
// the same as none, so buckets idle that long are swept (at most once a
// second).
type inviteRate struct {
	now func() time.Time

	mu      sync.Mutex
	rate    int
	buckets map[netip.Addr]*bucket
	swept   time.Time
}

// bucket is one source's limiter and when it last took an INVITE.
type bucket struct {
	lim *rate.Limiter
	at  time.Time
}

func newInviteRate(n int, now func() time.Time) *inviteRate {
	if now == nil {
		now = time.Now
	}
	return &inviteRate{rate: n, now: now, buckets: make(map[netip.Addr]*bucket)}
}

// take reports whether src may send one more new INVITE now, and counts it.
func (l *inviteRate) take(src netip.Addr) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) >= time.Second {
		l.sweep(now)
	}
	b, ok := l.buckets[src]
	if !ok {
		if len(l.buckets) >= maxRateSources {
			l.sweep(now)
			if len(l.buckets) >= maxRateSources {
				return false
			}
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.rate), l.rate)}
		l.buckets[src] = b
	}
	if now.After(b.at) {
		b.at = now
	}
	return b.lim.AllowN(now, 1)
}

// sweep forgets buckets full again. l.mu is held.
func (l *inviteRate) sweep(now time.Time) {
	l.swept = now
	for src, b := range l.buckets {
		if now.Sub(b.at) >= time.Second {
			delete(l.buckets, src)
		}
	}
}

// sources returns how many sources the limiter remembers.
func (l *inviteRate) sources() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// setRate changes the rate of a limit in force; each source keeps what it
// has taken.
func (l *inviteRate) setRate(n int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = n
	for _, b := range l.buckets {
		b.lim.SetLimitAt(now, rate.Limit(n))
		b.lim.SetBurstAt(now, n)
	}
}
