package sip

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
)

// Admission control (README "SIP behaviour in short"): when vnum cannot take one more call well,
// a new INVITE gets 503 with Retry-After at once, before any work that
// costs (no store lookup, no RTP port, no dialog state), and the calls in
// progress keep their quality. Re-INVITEs and in-dialog requests are never
// refused here.

// Overload refusals, counted by reason (vnum_calls_refused_total). Each
// label names what was short.
const (
	refusedDraining   = "draining"    // SIGTERM: the server drains
	refusedMaxActive  = "max_active"  // calls.max_active calls admitted
	refusedRTPPorts   = "rtp_ports"   // no free RTP port pair for a call
	refusedInviteRate = "invite_rate" // a source over security.invite_rate
	refusedSaturated  = "saturated"   // SIP datagrams wait to be read, or too many INVITEs in setup
	refusedStoreSlow  = "store_slow"  // a store answer later than store.timeout
)

// refusedReasons are every label, so that each series exists from the start.
var refusedReasons = []string{refusedDraining, refusedMaxActive, refusedRTPPorts,
	refusedInviteRate, refusedSaturated, refusedStoreSlow}

// pairsPerCall is the RTP port pairs a bridged call holds: one per leg.
const pairsPerCall = 2

// DefaultMaxSetup is Options.MaxSetup's default. By Little's law the
// INVITEs in setup are the rate times the time each takes: at 2,000
// calls/s and a setup of a few milliseconds that is about ten; 256 means
// each one waits a tenth of a second or more, a process or store that no
// longer keeps up, where taking more only makes every call later.
const DefaultMaxSetup = 256

// admission holds the counts admission control decides on. Its counters
// are atomics: the check costs no lock on the common path.
type admission struct {
	maxActive int64
	maxSetup  int64
	maxQueue  time.Duration // Options.MaxQueueDelay; 0: no check
	// admitted counts INVITEs admitted and not yet done with: calls in
	// progress (until they leave the registry) and those still being set
	// up. It is what
	// calls.max_active bounds, so that two INVITEs arriving together
	// cannot both take the last place (the registry counts a call only
	// once its dialog exists).
	admitted atomic.Int64
	// setup counts admitted INVITEs before their call is set up
	// (credentials, store lookups, the CDR's first write): the sign of a
	// saturated process (DefaultMaxSetup).
	setup   atomic.Int64
	rate    atomic.Pointer[inviteRate] // nil: no limit
	load    *sourceLoad
	refused map[string]*atomic.Int64 // fixed keys (refusedReasons)
	// inflight holds the Call-IDs of the INVITEs passed on to sipgo (the
	// Unix nanoseconds they were read or admitted at) until their ticket is
	// released, admit refuses them, or inflightFor has passed: a
	// retransmission of one of them is never refused at the socket
	// (shedAtRead), whatever the load.
	inflight sync.Map
	sweptAt  atomic.Int64 // Unix nanoseconds of the last sweep of inflight
	// countedAtRead is set when every UDP socket counts new INVITEs per
	// source as it reads them (shedAtRead): admit then only asks.
	countedAtRead bool
}

func newAdmission(o Options) *admission {
	a := &admission{
		maxActive: int64(o.MaxActive),
		maxSetup:  int64(o.MaxSetup),
		refused:   make(map[string]*atomic.Int64, len(refusedReasons)),
	}
	if a.maxSetup <= 0 {
		a.maxSetup = DefaultMaxSetup
	}
	switch {
	case o.MaxQueueDelay == 0:
		a.maxQueue = DefaultMaxQueueDelay
	case o.MaxQueueDelay > 0:
		a.maxQueue = o.MaxQueueDelay
	}
	a.setInviteRate(o.InviteRate, o.Now)
	a.load = newSourceLoad(o.Now)
	for _, r := range refusedReasons {
		a.refused[r] = new(atomic.Int64)
	}
	return a
}

// count counts one refusal for reason (one of refusedReasons).
func (a *admission) count(reason string) {
	if n, ok := a.refused[reason]; ok {
		n.Add(1)
	}
}

// ticket is one admitted INVITE's place. setupDone gives back its place
// among the INVITEs in setup, release its place among those admitted; both
// are idempotent and called on the INVITE's own goroutine.
type ticket struct {
	a               *admission
	inSetup, placed bool
	callID          string // in a.inflight while placed
}

func (t *ticket) setupDone() {
	if t.inSetup {
		t.inSetup = false
		t.a.setup.Add(-1)
	}
}

func (t *ticket) release() {
	t.setupDone()
	if t.placed {
		t.placed = false
		t.a.admitted.Add(-1)
		t.a.inflight.Delete(t.callID)
	}
}

// admit decides on a new INVITE before anything else is done for it, in
// the order of what each check costs: the source's rate, the places for
// calls, the RTP ports, then whether the process keeps up (its SIP socket
// read without delay, few INVITEs in setup). A saturated process refuses
// the sources that send the most first: a source sending less than half
// its share still gets through, so that a flood from one address does not
// shut out a merchant's softphone or a trunk beside it (README "SIP behaviour in short"). A
// refused INVITE is answered here (503 with Retry-After) and counted.
func (s *Server) admit(req *sip.Request, tx sip.ServerTransaction) (*ticket, bool) {
	a := s.admission
	src, srcErr := netip.ParseAddr(sourceHost(req))
	src = src.Unmap()
	if rate := a.rate.Load(); rate != nil && srcErr == nil && !s.fromTrunk(req) {
		// The trunk's few addresses carry every PSTN call: only other
		// sources are limited.
		if !rate.take(src) {
			s.refuse(req, tx, ErrInviteRate)
			return nil, false
		}
	}
	var light bool
	switch {
	case srcErr != nil:
	case a.countedAtRead && req.Transport() == "UDP":
		light = a.load.isLight(src) // counted as the socket read it
	default:
		light = a.load.light(src)
	}
	t := &ticket{a: a, placed: true, inSetup: true}
	n := a.admitted.Add(1)
	inSetup := a.setup.Add(1)
	var err error
	switch {
	case a.maxActive > 0 && n > a.maxActive:
		err = ErrMaxActive
	case !s.opts.Ports.Available(pairsPerCall):
		err = media.ErrNoPorts
	case inSetup > 2*a.maxSetup:
		err = ErrSaturated // no source is light enough for this many
	case light:
	case inSetup > a.maxSetup, a.maxQueue > 0 && s.queue.latest() > a.maxQueue:
		err = ErrSaturated
	}
	if id := req.CallID(); id != nil {
		t.callID = id.Value()
	}
	if err != nil {
		t.release() // and forgets the Call-ID: a retransmission is refused again
		s.refuse(req, tx, err)
		return nil, false
	}
	a.inflight.Store(t.callID, s.now().UnixNano())
	return t, true
}

// inflightFor is how long a Call-ID passed on stays in inflight at most:
// Timer B (64·T1, RFC 3261 §17.1.1.2), after which its caller sends no
// retransmission of that INVITE.
const inflightFor = 64 * 500 * time.Millisecond

// sweepInflight forgets, at most once a second, the Call-IDs passed on
// longer than inflightFor ago (INVITEs whose handler never reached admit).
func (a *admission) sweepInflight(now time.Time) {
	last := a.sweptAt.Load()
	if now.UnixNano()-last < int64(time.Second) || !a.sweptAt.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	old := now.Add(-inflightFor).UnixNano()
	a.inflight.Range(func(k, v any) bool {
		if at, ok := v.(int64); ok && at < old {
			a.inflight.Delete(k)
		}
		return true
	})
}

// RefusedCalls returns the new INVITEs refused because vnum could not
// take one more call well, by reason (README "SIP behaviour in short": max_active, rtp_ports,
// invite_rate, saturated, store_slow, draining), for
// vnum_calls_refused_total. Every reason is present, zero or not.
func (s *Server) RefusedCalls() map[string]int64 {
	out := make(map[string]int64, len(s.admission.refused))
	for r, n := range s.admission.refused {
		out[r] = n.Load()
	}
	return out
}

// maxRateSources bounds the sources inviteRate remembers: past it, after
// a sweep, a source it does not know is refused (a flood from spoofed
// addresses must not grow memory without end).
const maxRateSources = 1 << 16

// inviteRate is security.invite_rate: a token bucket per source address
// holding up to one second's INVITEs and refilled at rate per second.
// A bucket left alone for a second is full again, the same as none, so
// buckets idle that long are swept (at most once a second).
type inviteRate struct {
	rate float64
	now  func() time.Time

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

func newInviteRate(rate int, now func() time.Time) *inviteRate {
	if now == nil {
		now = time.Now
	}
	return &inviteRate{rate: float64(rate), now: now, buckets: make(map[netip.Addr]*bucket)}
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
		b = &bucket{tokens: l.rate, at: now}
		l.buckets[src] = b
	}
	if dt := now.Sub(b.at); dt > 0 {
		b.tokens = min(l.rate, b.tokens+dt.Seconds()*l.rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
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

// sources returns how many sources the limiter remembers (tests).
func (l *inviteRate) sources() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

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

// setInviteRate sets security.invite_rate (0: no limit); the buckets of a
// limit already in force are kept.
func (a *admission) setInviteRate(n int, now func() time.Time) {
	switch cur := a.rate.Load(); {
	case n <= 0:
		a.rate.Store(nil)
	case cur != nil:
		cur.setRate(n)
	default:
		a.rate.Store(newInviteRate(n, now))
	}
}

// setRate changes the rate of a limit in force.
func (l *inviteRate) setRate(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = float64(n)
}
