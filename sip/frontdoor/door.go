// Package frontdoor decides what may come in before signalling does any
// work for it: a new INVITE (calls.max_active, the RTP ports, a source's
// security.invite_rate, a process that no longer keeps up, a server
// draining), a datagram read while vnum is saturated (refused at the
// socket), a TCP or TLS connection (per-source and total caps, windows
// for slow and idle peers), and how each refusal is answered: which
// refusals count as overload, what "the store is short" means, and the
// Retry-After of every 503.
//
// Signalling asks it one question per new INVITE (Door.Admit) and hands
// it its sockets and listeners. The package knows no call: it imports
// nothing of vnum's signalling, and the call never reaches into it.
package frontdoor

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// DefaultMaxSetup is Options.MaxSetup's default. By Little's law the
// INVITEs in setup are the rate times the time each takes: at 2,000
// calls/s and a setup of a few milliseconds that is about ten; 256 means
// each one waits a tenth of a second or more, a process or store that no
// longer keeps up, where taking more only makes every call later.
const DefaultMaxSetup = 256

// DefaultMaxQueueDelay is Options.MaxQueueDelay's default: a fifth of
// RFC 3261's T1. A UDP caller retransmits an INVITE unanswered after T1
// (500 ms); a datagram that waited longer than this in the SIP socket
// before vnum read it means the process no longer keeps up with what it
// is sent, and taking more calls would only make every answer later and
// start the retransmissions that turn a busy server into a collapsing one.
const DefaultMaxQueueDelay = 100 * time.Millisecond

// pairsPerCall is the RTP port pairs a bridged call holds: one per leg.
const pairsPerCall = 2

// Ports is what the door asks of the RTP port allocator (media.Ports).
type Ports interface {
	// Available reports whether n port pairs are free now.
	Available(n int) bool
}

// Options configures a Door.
type Options struct {
	// MaxActive is calls.max_active: calls admitted (in progress or being
	// set up) before new ones are refused; 0 means no limit but the RTP
	// ports.
	MaxActive int
	// MaxSetup bounds the INVITEs being set up at once; zero means
	// DefaultMaxSetup.
	MaxSetup int
	// MaxQueueDelay is how long the SIP datagrams read last may have
	// waited in their socket before new INVITEs are refused as saturated;
	// zero means DefaultMaxQueueDelay, negative turns the check off.
	MaxQueueDelay time.Duration
	// InviteRate is security.invite_rate: new INVITEs per second from one
	// source, the trunk's aside; 0 means no limit.
	InviteRate int
	// DrainTimeout is calls.drain_timeout: a 503 while the server drains
	// tells the caller to come back after it.
	DrainTimeout time.Duration
	// Ports are the RTP ports a call needs two pairs of.
	Ports Ports
	// Trunk reports whether an address is one of the carrier trunk's
	// sources (trunk.inbound_cidrs as configured now): they carry every
	// PSTN call and are not rate limited. Nil: no trunk.
	Trunk func(netip.Addr) bool
	// Parser parses the INVITEs the door answers at the socket itself.
	Parser *sip.Parser
	// Now is the door's clock; nil means time.Now (tests pass theirs).
	Now func() time.Time
	// Log takes the door's rare lines; nil discards them.
	Log *slog.Logger
}

// Door is the front door for new calls. Its counters are atomics: the
// check of an INVITE costs no lock on the common path.
type Door struct {
	maxActive int64
	maxSetup  int64
	maxQueue  time.Duration // 0: no check
	drainFor  time.Duration
	ports     Ports
	trunk     func(netip.Addr) bool
	parser    *sip.Parser
	now       func() time.Time
	log       *slog.Logger

	draining atomic.Bool
	// admitted counts INVITEs admitted and not yet done with: calls in
	// progress (until they leave the registry) and those still being set
	// up. It is what calls.max_active bounds, so that two INVITEs
	// arriving together cannot both take the last place (the registry
	// counts a call only once its dialog exists).
	admitted atomic.Int64
	// setup counts admitted INVITEs before their call is set up
	// (credentials, store lookups, the CDR's first write): the sign of a
	// saturated process (DefaultMaxSetup).
	setup   atomic.Int64
	rate    atomic.Pointer[inviteRate] // nil: no limit
	load    *sourceLoad
	queue   *queueDelay
	refused map[string]*atomic.Int64 // fixed keys: reasons
	// inflight holds the Call-IDs of the INVITEs passed on to sipgo (the
	// Unix nanoseconds they were read or admitted at) until their ticket is
	// released, Admit refuses them, or inflightFor has passed: a
	// retransmission of one of them is never refused at the socket
	// (shedAtRead), whatever the load.
	inflight sync.Map
	sweptAt  atomic.Int64 // Unix nanoseconds of the last sweep of inflight
	// countedAtRead is set when every UDP socket counts new INVITEs per
	// source as it reads them (shedAtRead): Admit then only asks.
	countedAtRead bool
	unstamped     bool // a UDP socket without receive stamps (see WrapUDP)
}

// New makes a door.
func New(o Options) *Door {
	d := &Door{
		maxActive: int64(o.MaxActive),
		maxSetup:  int64(o.MaxSetup),
		drainFor:  o.DrainTimeout,
		ports:     o.Ports,
		trunk:     o.Trunk,
		parser:    o.Parser,
		now:       o.Now,
		log:       o.Log,
		refused:   make(map[string]*atomic.Int64, len(reasons)),
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.maxSetup <= 0 {
		d.maxSetup = DefaultMaxSetup
	}
	switch {
	case o.MaxQueueDelay == 0:
		d.maxQueue = DefaultMaxQueueDelay
	case o.MaxQueueDelay > 0:
		d.maxQueue = o.MaxQueueDelay
	}
	d.SetInviteRate(o.InviteRate)
	d.load = newSourceLoad(d.now)
	d.queue = newQueueDelay(d.now)
	for _, r := range reasons {
		d.refused[r] = new(atomic.Int64)
	}
	return d
}

// Ticket is one admitted INVITE's place. SetUp gives back its place among
// the INVITEs in setup, Release its place among those admitted; both are
// idempotent and called by the goroutine that owns the INVITE's call (its
// handler's, then the one that holds the established call).
type Ticket struct {
	d               *Door
	inSetup, placed bool
	callID          string // in d.inflight while placed
}

// SetUp says the INVITE's call is set up: it no longer counts as
// saturating the process.
func (t *Ticket) SetUp() {
	if t.inSetup {
		t.inSetup = false
		t.d.setup.Add(-1)
	}
}

// Release gives the INVITE's place back: its call ended, or it was
// refused.
func (t *Ticket) Release() {
	t.SetUp()
	if t.placed {
		t.placed = false
		t.d.admitted.Add(-1)
		t.d.inflight.Delete(t.callID)
	}
}

// Admit is the one question signalling asks of a new INVITE, before
// anything that costs (no store lookup, RTP port or dialog state): may
// it come in now? The checks go in the order of what each costs: the
// server draining, the source's rate, the places for calls, the RTP
// ports, then whether the process keeps up (its SIP sockets read without
// delay, few INVITEs in setup). A saturated process refuses the sources
// that send the most first: a source sending less than half its share
// still gets through, so that a flood from one address does not shut out
// a merchant's softphone or a trunk beside it. A refused INVITE gets one
// of ErrDraining, ErrInviteRate, ErrMaxActive, ErrNoPorts or
// ErrSaturated, for the caller to answer (and Count); an admitted one a
// ticket to give back.
func (d *Door) Admit(req *sip.Request) (*Ticket, error) {
	if d.draining.Load() {
		return nil, ErrDraining
	}
	ap, srcErr := netip.ParseAddrPort(req.Source())
	src := ap.Addr().Unmap()
	if rate := d.rate.Load(); rate != nil && srcErr == nil && (d.trunk == nil || !d.trunk(src)) {
		// The trunk's few addresses carry every PSTN call: only other
		// sources are limited.
		if !rate.take(src) {
			return nil, ErrInviteRate
		}
	}
	var light bool
	switch {
	case srcErr != nil:
	case d.countedAtRead && req.Transport() == "UDP":
		light = d.load.isLight(src) // counted as the socket read it
	default:
		light = d.load.light(src)
	}
	t := &Ticket{d: d, placed: true, inSetup: true}
	n := d.admitted.Add(1)
	inSetup := d.setup.Add(1)
	var err error
	switch {
	case d.maxActive > 0 && n > d.maxActive:
		err = ErrMaxActive
	case d.ports != nil && !d.ports.Available(pairsPerCall):
		err = ErrNoPorts
	case inSetup > 2*d.maxSetup:
		err = ErrSaturated // no source is light enough for this many
	case light:
	case inSetup > d.maxSetup, d.maxQueue > 0 && d.queue.latest() > d.maxQueue:
		err = ErrSaturated
	}
	if id := req.CallID(); id != nil {
		t.callID = id.Value()
	}
	if err != nil {
		t.Release() // and forgets the Call-ID: a retransmission is refused again
		return nil, err
	}
	d.inflight.Store(t.callID, d.now().UnixNano())
	return t, nil
}

// Guard returns tx as the INVITE's transaction until its call starts: a
// final response on it (a challenge, a refusal) first gives back the
// INVITE's place among those admitted. Else a caller's next INVITE, the
// signed one after a 407, could arrive before the handler of the
// challenged one has returned and find its own last place still taken
// (calls.max_active).
func (t *Ticket) Guard(tx sip.ServerTransaction) sip.ServerTransaction {
	return releasing{ServerTransaction: tx, t: t}
}

// releasing is a transaction that releases a ticket before its final
// response (Ticket.Guard).
type releasing struct {
	sip.ServerTransaction
	t *Ticket
}

// Respond releases the ticket before a final response, then sends it.
func (r releasing) Respond(res *sip.Response) error {
	if res.StatusCode >= 200 {
		r.t.Release()
	}
	return r.ServerTransaction.Respond(res)
}

// inflightFor is how long a Call-ID passed on stays in inflight at most:
// Timer B (64·T1, RFC 3261 §17.1.1.2), after which its caller sends no
// retransmission of that INVITE.
const inflightFor = 64 * 500 * time.Millisecond

// sweepInflight forgets, at most once a second, the Call-IDs passed on
// longer than inflightFor ago (INVITEs whose handler never reached Admit).
func (d *Door) sweepInflight(now time.Time) {
	last := d.sweptAt.Load()
	if now.UnixNano()-last < int64(time.Second) || !d.sweptAt.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	old := now.Add(-inflightFor).UnixNano()
	d.inflight.Range(func(k, v any) bool {
		if at, ok := v.(int64); ok && at < old {
			d.inflight.Delete(k)
		}
		return true
	})
}

// Drain turns new calls away from now on (SIGTERM): they are refused
// with ErrDraining, and every 503 says to come back after the drain.
func (d *Door) Drain() { d.draining.Store(true) }

// Draining reports whether Drain was called.
func (d *Door) Draining() bool { return d.draining.Load() }

// SetInviteRate sets security.invite_rate (0: no limit); what a limit
// already in force counted goes on under the new rate.
func (d *Door) SetInviteRate(n int) {
	switch cur := d.rate.Load(); {
	case n <= 0:
		d.rate.Store(nil)
	case cur != nil:
		cur.setRate(n)
	default:
		d.rate.Store(newInviteRate(n, d.now))
	}
}

// QueueDelay returns how long the SIP datagrams vnum read last had waited
// in its sockets, the least of the last few (vnum_sip_queue_delay_seconds):
// near zero while vnum keeps up, and the measure by which it refuses new
// INVITEs as saturated.
func (d *Door) QueueDelay() time.Duration { return d.queue.latest() }
