package sip

import (
	"net"
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
type queueDelay struct {
	now  func() time.Time
	last atomic.Int64 // nanoseconds the most recent datagram waited
}

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
	q.last.Store(max(int64(q.now().Sub(stamp)), 0))
}

// latest returns how long the most recently read datagram waited; zero
// before any was read or where the kernel gives no stamps.
func (q *queueDelay) latest() time.Duration { return time.Duration(q.last.Load()) }

// QueueDelay returns how long the SIP datagram vnum read last had waited
// in its socket (vnum_sip_queue_delay_seconds): near zero while vnum keeps
// up, and the measure by which it refuses new INVITEs as saturated.
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
