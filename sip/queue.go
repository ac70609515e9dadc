package sip

import (
	"bytes"
	"hash/fnv"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
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
// saturating (README "SIP behaviour in short"): it rises before a single INVITE is late enough to
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
// the time it waited (queueDelay), and may answer some itself (shed)
// before sipgo sees them (docs/sipgo.md §17). sipgo reads it from one
// goroutine per socket, so the control-message buffer is not shared.
type stampedConn struct {
	*net.UDPConn
	oob   []byte
	delay *queueDelay
	// shed, when set, is given each datagram after its stamp; true means
	// it was answered (or is to be dropped) and sipgo never sees it.
	shed func(data []byte, from *net.UDPAddr) bool
}

// ReadFrom reads one datagram as net.PacketConn's ReadFrom does, and
// records how long it waited in the socket.
func (c *stampedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, oobn, _, addr, err := c.ReadMsgUDP(b, c.oob)
		if err != nil {
			return n, nil, err
		}
		if at, ok := receiveStamp(c.oob[:oobn]); ok {
			c.delay.observe(at)
		}
		if c.shed != nil && c.shed(b[:n], addr) {
			continue
		}
		return n, addr, nil
	}
}

// shedTagPrefix starts the To tag of the 503s shedAtRead sends, so that
// their ACKs are known at the socket too.
const shedTagPrefix = "vnum-ol-"

var (
	inviteLine = []byte("INVITE ")
	ackLine    = []byte("ACK ")
	shedTag    = []byte("tag=" + shedTagPrefix)
)

// shedAtRead answers a new INVITE with 503 and Retry-After on the
// socket's own goroutine, statelessly (RFC 3261 §8.2.7), while vnum is
// saturated and the INVITE's source is not light (sourceLoad): no
// transaction, goroutine or timer is made for it, so the refusals of a
// flood cost the reader little and leave the process to the calls it
// has. The ACKs of those 503s are dropped here too. Every new INVITE read
// is counted per source here, saturated or not, and each one passed on to
// sipgo is remembered by its Call-ID (admission.inflight) until admitted
// and done with, refused, or past Timer B: a retransmission of it, which
// may arrive before its handler has even run, is never shed. Anything
// else, an INVITE that does not parse or a re-INVITE (To tag), goes on to
// sipgo uncounted.
func (s *Server) shedAtRead(conn *net.UDPConn, data []byte, from *net.UDPAddr) bool {
	// Before anything parses it: a datagram over vnum's limits on header
	// fields is refused here, whatever the load (limits.go).
	if s.refuseAtRead(conn, data, from) {
		return true
	}
	if bytes.HasPrefix(data, ackLine) {
		head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
		return bytes.Contains(head, shedTag)
	}
	if s.unstamped || !bytes.HasPrefix(data, inviteLine) {
		return false // an unstamped socket elsewhere: admit counts every INVITE
	}
	msg, err := s.parser.ParseSIP(data)
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.CallID() == nil || req.To() == nil || req.From() == nil || req.CSeq() == nil || req.Via() == nil ||
		req.To().Params.Has("tag") {
		return false
	}
	a := s.admission
	now := s.now()
	a.sweepInflight(now)
	callID := req.CallID().Value()
	if _, known := a.inflight.Load(callID); known {
		return false // a retransmission of an INVITE passed on
	}
	light := a.load.light(from.AddrPort().Addr().Unmap())
	if light || a.maxQueue <= 0 || s.queue.latest() <= a.maxQueue {
		a.inflight.Store(callID, now.UnixNano())
		return false
	}
	res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
	if to := res.To(); to != nil {
		if to.Params == nil {
			to.Params = sip.NewParams()
		}
		to.Params.Add("tag", shedToTag(req))
	}
	for _, h := range s.retryAfter(sip.StatusServiceUnavailable, reasonInternal) {
		res.AppendHeader(h)
	}
	a.count(refusedSaturated)
	if _, err := conn.WriteToUDP([]byte(res.String()), from); err != nil {
		s.log.Debug("stateless 503", "error", err)
	}
	return true
}

// shedToTag is the To tag of a stateless 503: the same for every
// retransmission of one request, as RFC 3261 §8.2.7 asks of a stateless
// UAS, from the Call-ID, the From tag and the top Via branch.
func shedToTag(req *sip.Request) string {
	h := fnv.New64a()
	h.Write([]byte(req.CallID().Value()))
	if tag, ok := req.From().Params.Get("tag"); ok {
		h.Write([]byte{0})
		h.Write([]byte(tag))
	}
	if branch, ok := req.Via().Params.Get("branch"); ok {
		h.Write([]byte{0})
		h.Write([]byte(branch))
	}
	return shedTagPrefix + strconv.FormatUint(h.Sum64(), 36)
}
