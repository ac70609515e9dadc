package frontdoor

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

// WrapUDP returns a SIP UDP socket as the door reads it: each datagram
// stamped with the time it waited there (QueueDelay), and new INVITEs
// refused at the socket while vnum is saturated (shedAtRead). pre, when
// set, sees every datagram of a stamped socket first; true means it was
// answered (or is to be dropped) and nobody else sees it. Where the
// kernel gives no receive stamps the socket is returned as it is, with
// the error why: Admit then counts every INVITE itself and decides
// without the queue delay.
func (d *Door) WrapUDP(conn *net.UDPConn, pre func(data []byte, from *net.UDPAddr) bool) (net.PacketConn, error) {
	pc, err := stampReads(conn, d.queue)
	if sc, ok := pc.(*stampedConn); ok && !d.unstamped {
		sc.shed = func(data []byte, from *net.UDPAddr) bool {
			if pre != nil && pre(data, from) {
				return true
			}
			return d.shedAtRead(conn, data, from)
		}
		d.countedAtRead = true
		return pc, err
	}
	// INVITEs read here are not counted at the socket: Admit counts.
	d.unstamped, d.countedAtRead = true, false
	return pc, err
}

// stampedConn is a SIP UDP socket that stamps each datagram it reads with
// the time it waited (queueDelay), and may answer some itself (shed)
// before sipgo sees them. sipgo reads it from one
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

// StatelessTagPrefix starts the To tag of the responses vnum sends
// statelessly (StatelessTag), so that their ACKs are known at the socket
// too, and dropped there.
const StatelessTagPrefix = "vnum-ol-"

var (
	inviteLine = []byte("INVITE ")
	ackLine    = []byte("ACK ")
	shedTag    = []byte("tag=" + StatelessTagPrefix)
)

// shedAtRead answers a new INVITE with 503 and Retry-After on the
// socket's own goroutine, statelessly (RFC 3261 §8.2.7), while vnum is
// saturated and the INVITE's source is not light (sourceLoad): no
// transaction, goroutine or timer is made for it, so the refusals of a
// flood cost the reader little and leave the process to the calls it
// has. The ACKs of those 503s are dropped here too. Every new INVITE read
// is counted per source here, saturated or not, and each one passed on to
// sipgo is remembered by its Call-ID (Door.inflight) until admitted
// and done with, refused, or past Timer B: a retransmission of it, which
// may arrive before its handler has even run, is never shed. Anything
// else, an INVITE that does not parse or a re-INVITE (To tag), goes on to
// sipgo uncounted.
func (d *Door) shedAtRead(conn *net.UDPConn, data []byte, from *net.UDPAddr) bool {
	if bytes.HasPrefix(data, ackLine) {
		head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
		return bytes.Contains(head, shedTag)
	}
	if d.unstamped || !bytes.HasPrefix(data, inviteLine) {
		return false // an unstamped socket elsewhere: admit counts every INVITE
	}
	msg, err := d.parser.ParseSIP(data)
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.CallID() == nil || req.To() == nil || req.From() == nil || req.CSeq() == nil || req.Via() == nil ||
		req.To().Params.Has("tag") {
		return false
	}
	now := d.now()
	d.sweepInflight(now)
	callID := req.CallID().Value()
	if _, known := d.inflight.Load(callID); known {
		return false // a retransmission of an INVITE passed on
	}
	light := d.load.light(from.AddrPort().Addr().Unmap())
	if light || d.maxQueue <= 0 || d.queue.latest() <= d.maxQueue {
		d.inflight.Store(callID, now.UnixNano())
		return false
	}
	res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
	if to := res.To(); to != nil {
		if to.Params == nil {
			to.Params = sip.NewParams()
		}
		to.Params.Add("tag", StatelessTag(req))
	}
	for _, h := range d.RetryAfter(sip.StatusServiceUnavailable, false) {
		res.AppendHeader(h)
	}
	d.Count(ErrSaturated)
	if _, err := conn.WriteToUDP([]byte(res.String()), from); err != nil {
		d.log.Debug("stateless 503", "error", err)
	}
	return true
}

// StatelessTag is the To tag of a response vnum sends statelessly (a 503
// at the socket, a refusal of a message over vnum's limits): the same for every
// retransmission of one request, as RFC 3261 §8.2.7 asks of a stateless
// UAS, from the Call-ID, the From tag and the top Via branch.
func StatelessTag(req *sip.Request) string {
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
	return StatelessTagPrefix + strconv.FormatUint(h.Sum64(), 36)
}
