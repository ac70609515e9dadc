package frontdoor

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The TCP guard's defaults.
const (
	// DefaultTCPIdle is how long a connection may send nothing between
	// messages (no request, no response, no CRLF keepalive) before it is
	// closed, unless a registration or a call in progress rides on it.
	// Phones that keep a connection send a keepalive every 30 s or so;
	// those that keep it with RFC 5626 keepalives (up to 120 s apart)
	// register over it, and a registration keeps it.
	DefaultTCPIdle = 60 * time.Second
	// DefaultTCPMessageTimeout bounds how long one message may take: a
	// new connection's first one (its TLS handshake included) from the
	// accept, every later one from its first byte, and each write of
	// vnum's to a peer that does not read. A SIP message is a few
	// kilobytes: any link delivers it in well under a second.
	DefaultTCPMessageTimeout = 10 * time.Second
	// DefaultTCPPerSource is how many connections one source address (an
	// IPv6 /64) may hold open: an office behind one NAT has a connection
	// per phone, dozens rather than hundreds. The trunk's sources
	// (trunk.inbound_cidrs) count only towards the total.
	DefaultTCPPerSource = 64
)

// tcpReason is why the guard refused a connection at its accept or closed
// it later; its name is the reason label of vnum_sip_tcp_refused_total.
type tcpReason int

const (
	// tcpPerSource: the source already holds its share of connections.
	tcpPerSource tcpReason = iota
	// tcpTotal: the process holds all the connections its descriptors
	// allow for signalling.
	tcpTotal
	// tcpIdle: nothing for the idle window (a new connection: for the
	// message window).
	tcpIdle
	// tcpSlow: a message begun and not finished within the message window.
	tcpSlow
	// tcpStalled: the peer did not take what vnum wrote within the message
	// window.
	tcpStalled
	tcpReasons // how many there are
)

// String names the reason as the metric's label does.
func (r tcpReason) String() string {
	switch r {
	case tcpPerSource:
		return "per_source"
	case tcpTotal:
		return "total"
	case tcpIdle:
		return "idle"
	case tcpSlow:
		return "slow"
	case tcpStalled:
		return "stalled"
	}
	return "unknown"
}

// logEvery is how often the guard logs one kind of refusal, or accept
// failures: a flood must not become a flood of log lines.
const logEvery = 10 * time.Second

// TCPGuard stands between the TCP and TLS listeners and sipgo, which reads
// each accepted connection in a goroutine of its own for as long as the
// connection stays open, and whose accept loop ends at the first error.
// The guard keeps accepting through errors that pass (out of descriptors,
// a connection reset in the queue), caps the connections each source and
// all of them may hold, and closes connections that send no complete
// message for too long (see guardedConn).
type TCPGuard struct {
	perSource     int
	idle, message time.Duration
	// exempt says whether a source escapes the per-source cap: the
	// trunk's, as configured now.
	exempt func(netip.Addr) bool
	log    *slog.Logger
	// total is the cap on all connections, set from the descriptor budget
	// once the listeners are bound.
	total atomic.Int64

	mu       sync.Mutex
	open     int
	bySource map[netip.Addr]int
	byRemote map[string]*guardedConn // by the peer's address as sipgo names it

	refused  [tcpReasons]atomic.Int64
	logs     [tcpReasons]throttle
	failures throttle // accept errors

	budget budgetLine // Budget's, for LogBudget
}

// TCPOptions are the TCP guard's windows and caps.
type TCPOptions struct {
	// PerSource caps the TCP and TLS connections one source address (an
	// IPv6 /64) holds open; zero means DefaultTCPPerSource.
	PerSource int
	// Idle is how long a connection may go without a message or keepalive
	// unless a registration or a call rides on it; zero means
	// DefaultTCPIdle.
	Idle time.Duration
	// MessageTimeout bounds a message's arrival once begun, a new
	// connection's first message and each write to a peer; zero means
	// DefaultTCPMessageTimeout.
	MessageTimeout time.Duration
}

// NewTCPGuard makes the guard of o's windows and caps. exempt says
// whether a source escapes the per-source cap (the trunk's, as configured
// now; nil: none does). The total cap starts unlimited until Budget sets
// it.
func NewTCPGuard(o TCPOptions, exempt func(netip.Addr) bool, log *slog.Logger) *TCPGuard {
	g := &TCPGuard{
		perSource: o.PerSource, idle: o.Idle, message: o.MessageTimeout,
		exempt: exempt, log: log,
		bySource: make(map[netip.Addr]int), byRemote: make(map[string]*guardedConn),
	}
	if g.perSource <= 0 {
		g.perSource = DefaultTCPPerSource
	}
	if g.idle <= 0 {
		g.idle = DefaultTCPIdle
	}
	if g.message <= 0 {
		g.message = DefaultTCPMessageTimeout
	}
	g.total.Store(1<<62 - 1)
	return g
}

// Listener wraps a TCP or TLS listener (network says which, for logs):
// its Accept returns only the connections the caps admit, and waits out
// the errors that pass.
func (g *TCPGuard) Listener(ln net.Listener, network string) net.Listener {
	return &guardedListener{Listener: ln, g: g, network: network, done: make(chan struct{})}
}

// sourceKey is the address the per-source cap counts by: an IPv4 address,
// or an IPv6 address's /64, which one subscriber holds whole.
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// admit takes an accepted connection under the caps, or closes it at once
// and returns nil.
func (g *TCPGuard) admit(c net.Conn) *guardedConn {
	remote := c.RemoteAddr().String()
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		ip = ap.Addr().Unmap()
	}
	key := sourceKey(ip)
	exempt := g.exempt != nil && ip.IsValid() && g.exempt(ip)
	now := time.Now()
	g.mu.Lock()
	why := tcpReasons
	switch {
	case int64(g.open) >= g.total.Load():
		why = tcpTotal
	case !exempt && g.bySource[key] >= g.perSource:
		why = tcpPerSource
	}
	var gc *guardedConn
	open := g.open // what the refusal's log line shows against the cap
	switch why {
	case tcpReasons:
		g.open++
		g.bySource[key]++
		gc = &guardedConn{Conn: c, g: g, source: key, ip: ip, remote: remote, began: now, last: now}
		g.byRemote[remote] = gc
	case tcpPerSource:
		open = g.bySource[key]
	}
	g.mu.Unlock()
	if gc != nil {
		return gc
	}
	g.refuse(c, why, ip, open)
	return nil
}

// refuse closes a connection the caps do not admit. It goes with a reset
// (SO_LINGER 0): nothing was said on it, and no TIME_WAIT is left behind
// for each one of a flood.
func (g *TCPGuard) refuse(c net.Conn, why tcpReason, ip netip.Addr, open int) {
	raw := c
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		raw = tc.NetConn() // a *tls.Conn
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // best effort: the close below is what matters
	}
	if err := raw.Close(); err != nil {
		g.log.Debug("closing a refused tcp connection", "error", err)
	}
	g.refused[why].Add(1)
	if held, ok := g.logs[why].allow(time.Now()); ok {
		limit := int64(g.perSource)
		if why == tcpTotal {
			limit = g.total.Load()
		}
		g.log.Warn("sip tcp connection refused", "reason", why.String(), "source", ip.String(),
			"open", open, "limit", limit, "refused_unlogged", held)
	}
}

// closed counts and logs a connection the guard closes for why.
func (g *TCPGuard) closed(gc *guardedConn, why tcpReason) {
	g.refused[why].Add(1)
	if why == tcpIdle {
		// A phone that went away without a word: routine.
		g.log.Debug("sip tcp connection closed", "reason", why.String(), "source", gc.ip.String())
		return
	}
	if held, ok := g.logs[why].allow(time.Now()); ok {
		g.log.Warn("sip tcp connection closed", "reason", why.String(), "source", gc.ip.String(), "closed_unlogged", held)
	}
}

// release forgets a closed connection.
func (g *TCPGuard) release(gc *guardedConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open--
	if g.bySource[gc.source]--; g.bySource[gc.source] <= 0 {
		delete(g.bySource, gc.source)
	}
	if g.byRemote[gc.remote] == gc {
		delete(g.byRemote, gc.remote)
	}
}

// conn returns the open connection a request came over, or nil when it
// came over UDP or its connection is gone.
func (g *TCPGuard) conn(req *sip.Request) *guardedConn {
	if t := strings.ToLower(req.Transport()); t != "tcp" && t != "tls" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.byRemote[req.Source()]
}

// Pin keeps the connection req came over open for d past its idle window
// (a registration over it: vnum reaches the phone through it for that
// long); d of 0 lets it go idle again.
func (g *TCPGuard) Pin(req *sip.Request, d time.Duration) {
	gc := g.conn(req)
	if gc == nil {
		return
	}
	var until int64
	if d > 0 {
		until = time.Now().Add(d).UnixNano()
	}
	gc.pinned.Store(until)
}

// Hold keeps the connection req came over open past its idle window until
// the returned function is called (a call whose leg A came over it).
func (g *TCPGuard) Hold(req *sip.Request) (release func()) {
	gc := g.conn(req)
	if gc == nil {
		return func() {}
	}
	gc.calls.Add(1)
	var once sync.Once
	return func() { once.Do(func() { gc.calls.Add(-1) }) }
}

// acceptFailed logs an accept error that vnum waits out.
func (g *TCPGuard) acceptFailed(network string, err error, retry time.Duration) {
	if held, ok := g.failures.allow(time.Now()); ok {
		g.log.Warn("sip tcp accept failed; retrying", "network", network, "error", err,
			"retry_in", retry.String(), "failures_unlogged", held)
	}
}

// Conns is how many TCP and TLS connections are open.
func (g *TCPGuard) Conns() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// Refused counts the TCP and TLS connections refused at their accept
// (per_source, total) or closed by the guard (idle, slow, stalled), by
// reason.
func (g *TCPGuard) Refused() map[string]int64 {
	out := make(map[string]int64, tcpReasons)
	for r := range tcpReasons {
		out[r.String()] = g.refused[r].Load()
	}
	return out
}

// throttle lets a log line through at most once per logEvery and counts
// the ones it held back.
type throttle struct {
	mu   sync.Mutex
	next time.Time
	held int
}

// allow reports whether a line may be logged now and how many were held
// back since the last one.
func (t *throttle) allow(now time.Time) (held int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Before(t.next) {
		t.held++
		return 0, false
	}
	held, t.held, t.next = t.held, 0, now.Add(logEvery)
	return held, true
}

// Accept backoff after an error that passes, as net/http's server does:
// from acceptBackoffMin doubling to acceptBackoffMax.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// guardedListener is a TCP or TLS listener whose Accept returns only
// admitted connections, and only one error: that the listener was closed
// (or broke for good). sipgo's accept loop ends at the first error it
// gets, so that every error that passes (no descriptor left, a connection
// aborted in the queue) is waited out here, never handed up.
type guardedListener struct {
	net.Listener
	g       *TCPGuard
	network string
	done    chan struct{}
	once    sync.Once
}

// Accept waits for the next connection the caps admit; those they do not
// are accepted and closed at once, so that the kernel's queue drains.
func (l *guardedListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			delay = 0
			if gc := l.g.admit(c); gc != nil {
				return gc, nil
			}
			continue
		}
		if errors.Is(err, net.ErrClosed) || !passingAcceptError(err) {
			return nil, err
		}
		delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
		l.g.acceptFailed(l.network, err, delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// Close closes the listener, and ends a backoff in progress.
func (l *guardedListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// passingAcceptError reports whether accept failed for a reason that
// passes: a timeout, an errno Go counts as temporary (EMFILE, ENFILE,
// EAGAIN, EINTR, ETIMEDOUT), or one of acceptRetryErrnos.
func passingAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	if errno.Temporary() {
		return true
	}
	for _, e := range acceptRetryErrnos {
		if errno == e {
			return true
		}
	}
	return false
}

// guardedConn is an accepted connection as sipgo reads it. It finds the
// ends of messages in what passes (msgFramer) and closes the connection
// when
//   - a new connection says nothing complete (not even a keepalive)
//     within the message window of its accept (reason idle; a TLS
//     handshake counts against that window too);
//   - a message, once begun, is not complete within the message window:
//     a slowloris that dribbles bytes and never finishes (reason slow);
//   - nothing ends for the idle window between messages, unless a
//     registration or a call in progress rides on the connection (then
//     it stays, and the window starts again) (reason idle);
//   - a write of vnum's is not taken within the message window (reason
//     stalled).
type guardedConn struct {
	net.Conn
	g      *TCPGuard
	source netip.Addr // what the per-source cap counts
	ip     netip.Addr // the peer's address, for logs
	remote string     // the peer's address as sipgo names it (Request.Source)

	// The reading goroutine's (sipgo reads each connection from one):
	// the framer, when a message or keepalive last ended (last), when the
	// message in progress began (began; the accept before the first), and
	// whether anything has ended yet (heard).
	frame msgFramer
	last  time.Time
	began time.Time
	heard bool

	pinned atomic.Int64 // a registration keeps it open until then (Unix ns)
	calls  atomic.Int32 // calls in progress whose leg A came over it
	done   atomic.Bool
}

// Read reads as the connection's windows allow. When one runs out the
// connection is closed and Read reports io.EOF; so does every other read
// error, after the connection is closed: sipgo's reader ends on any error,
// and logs those other than the end of the stream as its own errors,
// while a peer that resets its connection is no fault of vnum's.
func (gc *guardedConn) Read(b []byte) (int, error) {
	for {
		deadline, why := gc.deadline()
		if err := gc.Conn.SetReadDeadline(deadline); err != nil {
			return 0, gc.fail(err)
		}
		n, err := gc.Conn.Read(b)
		if n > 0 {
			gc.saw(b[:n], time.Now())
			// An error with data comes again on the next read.
			return n, nil
		}
		if err == nil {
			return 0, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || gc.done.Load() {
			return 0, gc.fail(err)
		}
		now := time.Now()
		if why == tcpIdle && gc.heard && gc.inUse(now) {
			gc.last = now
			continue
		}
		gc.g.closed(gc, why)
		gc.close()
		return 0, io.EOF
	}
}

// deadline is when the next read must have brought an end, and the reason
// the connection is closed for if it has not.
func (gc *guardedConn) deadline() (time.Time, tcpReason) {
	switch {
	case gc.frame.inMessage():
		return gc.began.Add(gc.g.message), tcpSlow
	case !gc.heard:
		return gc.began.Add(gc.g.message), tcpIdle
	}
	return gc.last.Add(gc.g.idle), tcpIdle
}

// saw passes the bytes just read through the framer.
func (gc *guardedConn) saw(p []byte, now time.Time) {
	was := gc.frame.inMessage()
	ends := gc.frame.feed(p)
	if ends > 0 {
		gc.heard, gc.last = true, now
	}
	// A message that begins in this read begins now; the first one counts
	// from the accept.
	if gc.frame.inMessage() && gc.heard && (ends > 0 || !was) {
		gc.began = now
	}
}

// inUse reports whether a registration or a call keeps the connection.
func (gc *guardedConn) inUse(now time.Time) bool {
	return gc.calls.Load() > 0 || gc.pinned.Load() > now.UnixNano()
}

// fail closes the connection after a read error, and hands sipgo the end
// of the stream.
func (gc *guardedConn) fail(err error) error {
	if !gc.done.Load() && !errors.Is(err, io.EOF) {
		gc.g.log.Debug("sip tcp connection read failed", "source", gc.ip.String(), "error", err)
	}
	gc.close()
	return io.EOF
}

// Write writes within the message window; a peer that does not take the
// bytes in time is closed.
func (gc *guardedConn) Write(b []byte) (int, error) {
	if err := gc.Conn.SetWriteDeadline(time.Now().Add(gc.g.message)); err != nil {
		return 0, err
	}
	n, err := gc.Conn.Write(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !gc.done.Load() {
		gc.g.closed(gc, tcpStalled)
		gc.close()
	}
	return n, err
}

// Close closes the connection once; later calls do nothing.
func (gc *guardedConn) Close() error {
	return gc.close()
}

func (gc *guardedConn) close() error {
	if !gc.done.CompareAndSwap(false, true) {
		return nil
	}
	err := gc.Conn.Close()
	gc.g.release(gc)
	return err
}

// Limit is the cap on open TCP and TLS connections.
func (g *TCPGuard) Limit() int { return int(g.total.Load()) }
