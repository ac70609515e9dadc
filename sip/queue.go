package sip

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxQueueDelay is Options.MaxQueueDelay's default: a fifth of
// RFC 3261's T1. A UDP caller retransmits an INVITE unanswered after T1
// (500 ms); a datagram that waited longer than this in the SIP socket
// before vnum read it means the process no longer keeps up with what it
// is sent, and taking more calls would only make every answer later and
// start the retransmissions that turn a busy server into a collapsing one.
const DefaultMaxQueueDelay = 100 * time.Millisecond

// queueDelay is how long the datagrams vnum reads from its SIP UDP
// sockets waited there: the time from the kernel's receive stamp
// (SO_TIMESTAMPNS) to the read. It is the earliest sign of a process
// saturating (SPEC §8): it rises before a single INVITE is late enough to
// be retransmitted, and it costs one clock read per datagram.
//
// What counts is the least wait of the last queueSamples datagrams, as
// CoDel (RFC 8289) judges a queue by its minimum sojourn time: a standing
// queue delays every datagram, while one datagram that waited out a
// moment's pause (a descheduled thread, a burst) does not make vnum
// refuse calls.
type queueDelay struct {
	now func() time.Time

	mu       sync.Mutex
	waits    [queueSamples]time.Duration
	next     int
	standing atomic.Int64 // nanoseconds: the least of waits
}

// queueSamples is how many of the latest datagrams must all have waited
// before the queue counts as standing.
const queueSamples = 8

func newQueueDelay(now func() time.Time) *queueDelay {
	if now == nil {
		now = time.Now
	}
	return &queueDelay{now: now}
}

// observe records a datagram the kernel received at stamp and that was
// read now. The kernel's stamp and time.Now are both the wall clock: a
// step of it makes at most the datagrams in flight look early (counted as
// no wait) or late.
func (q *queueDelay) observe(stamp time.Time) {
	wait := max(q.now().Sub(stamp), 0)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waits[q.next] = wait
	q.next = (q.next + 1) % queueSamples
	least := q.waits[0]
	for _, w := range q.waits[1:] {
		least = min(least, w)
	}
	q.standing.Store(int64(least))
}

// latest returns the least wait of the last queueSamples datagrams; zero
// before that many were read or where the kernel gives no stamps.
func (q *queueDelay) latest() time.Duration { return time.Duration(q.standing.Load()) }

// QueueDelay returns how long the SIP datagrams vnum read last had waited
// in its sockets, the least of the last few (vnum_sip_queue_delay_seconds):
// near zero while vnum keeps up, and the measure by which it refuses new
// INVITEs as saturated.
func (s *Server) QueueDelay() time.Duration { return s.queue.latest() }

// stampedConn is a SIP UDP socket that stamps each datagram it reads with
// the time it waited (queueDelay). sipgo reads it from one goroutine per
// socket, so the control-message buffer is not shared.
type stampedConn struct {
	*net.UDPConn
	oob   []byte
	delay *queueDelay
}

// ReadFrom reads one datagram as net.PacketConn's ReadFrom does, and
// records how long it waited in the socket.
func (c *stampedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, oobn, _, addr, err := c.ReadMsgUDP(b, c.oob)
	if err != nil {
		return n, nil, err
	}
	if at, ok := receiveStamp(c.oob[:oobn]); ok {
		c.delay.observe(at)
	}
	return n, addr, nil
}
