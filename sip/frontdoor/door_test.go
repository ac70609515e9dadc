package frontdoor

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// testClock is a clock a test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// freePorts is an RTP port pool that always has room.
type freePorts struct{}

func (freePorts) Available(int) bool { return true }

// newInvite is a new INVITE from src with Call-ID callID.
func newInvite(src, callID string) *sip.Request {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "17000000001", Host: "127.0.0.1"})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.SetSource(src)
	req.SetTransport("UDP")
	return req
}

// TestInviteRateForgetsIdleSources: the limiter's memory is bounded by the
// sources seen within the last second.
func TestInviteRateForgetsIdleSources(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	l := newInviteRate(1, clock.Now)
	for i := range 100 {
		require.True(t, l.take(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})))
	}
	require.Equal(t, 100, l.sources())
	require.False(t, l.take(netip.AddrFrom4([4]byte{192, 0, 2, 0})))
	clock.Advance(time.Second)
	require.True(t, l.take(netip.AddrFrom4([4]byte{198, 51, 100, 1})))
	require.Equal(t, 1, l.sources(), "sources idle for a second are swept")
}

// TestInviteRateSparesTrunk: the trunk's sources are not rate limited,
// and not even remembered by the limiter; other sources are.
func TestInviteRateSparesTrunk(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	trunk := netip.MustParseAddr("127.0.0.1")
	d := New(Options{InviteRate: 2, Now: clock.Now, Ports: freePorts{}, MaxQueueDelay: -1,
		Trunk: func(a netip.Addr) bool { return a == trunk }})
	for i := range 5 {
		tk, err := d.Admit(newInvite("127.0.0.1:5060", "trunk-"+string(rune('a'+i))))
		require.NoError(t, err, "the trunk is not rate limited")
		tk.Release()
	}
	require.Zero(t, d.rate.Load().sources(), "trunk sources are not even remembered")
	for i := range 2 {
		tk, err := d.Admit(newInvite("192.0.2.7:5060", "other-"+string(rune('a'+i))))
		require.NoError(t, err)
		tk.Release()
	}
	_, err := d.Admit(newInvite("192.0.2.7:5060", "other-c"))
	require.ErrorIs(t, err, ErrInviteRate)
	d.Count(err)
	require.EqualValues(t, 1, d.Refused()[ReasonInviteRate])
}

// TestQueueDelayNeedsStandingQueue: one datagram that waited long among
// fresh ones does not count as a standing queue; a run of late ones does.
func TestQueueDelayNeedsStandingQueue(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	q := newQueueDelay(func() time.Time { return now })
	for range queueSamples - 1 {
		q.observe(now.Add(-time.Second))
	}
	require.Zero(t, q.latest(), "fewer late datagrams than samples")
	q.observe(now.Add(-time.Second))
	require.Equal(t, time.Second, q.latest(), "every one of the last datagrams waited")
	q.observe(now)
	require.Zero(t, q.latest(), "a fresh one: the queue is gone")
	q.observe(now.Add(-time.Second))
	require.Zero(t, q.latest(), "one late datagram among fresh ones")
}

// TestStampedConnMeasuresWait: datagrams left 30 ms in a stamped socket
// are read as having waited at least that long (the kernel's receive
// stamp, not the time of the read).
func TestStampedConnMeasuresWait(t *testing.T) {
	t.Parallel()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	q := newQueueDelay(nil)
	pc, err := stampReads(conn, q)
	require.NoError(t, err)
	tx, err := net.DialUDP("udp", nil, conn.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Close() })

	// The kernel turns stamping on for the machine a moment after the
	// first socket asks (net_enable_timestamp defers it): until then a
	// datagram is stamped when it is read. Each round waits, so the first
	// stamped ones show the wait.
	const wait = 30 * time.Millisecond
	buf := make([]byte, 1500)
	for range 20 {
		for range queueSamples {
			_, err = tx.Write([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
			require.NoError(t, err)
		}
		time.Sleep(wait) // the wait being measured
		for range queueSamples {
			n, from, err := pc.ReadFrom(buf)
			require.NoError(t, err)
			require.Equal(t, "OPTIONS sip:x SIP/2.0\r\n\r\n", string(buf[:n]))
			require.Equal(t, tx.LocalAddr().String(), from.String())
		}
		if q.latest() >= wait {
			return
		}
	}
	t.Fatalf("no round of 20 was read as having waited %v (last: %v)", wait, q.latest())
}

// TestSourceLoadLight: the share rule of sourceLoad on a stepped clock.
func TestSourceLoadLight(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	l := newSourceLoad(func() time.Time { return now })
	flood, phone := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for range 10 {
		require.False(t, l.light(flood), "a lone source is never light")
	}
	require.True(t, l.light(phone), "1 of 11 INVITEs from two sources")
	require.True(t, l.light(phone), "2 of 12")
	require.True(t, l.light(phone), "3 of 13 is under half the mean of 6.5")
	require.False(t, l.light(phone), "4 of 14 is not")

	now = now.Add(time.Second) // the last second still counts
	require.False(t, l.light(phone), "5 of 15")
	require.False(t, l.light(flood))

	now = now.Add(3 * time.Second) // after a quiet second the past is gone
	require.False(t, l.light(phone), "alone again")
	require.Equal(t, 1, l.curN+l.prevN)
}

// standingQueue makes the door's queue delay stand at wait, as if the
// last datagrams had all waited that long in the socket.
func standingQueue(d *Door, wait time.Duration) {
	now := d.now()
	for range queueSamples {
		d.queue.observe(now.Add(-wait))
	}
}

// TestShedAtRead: what a saturated vnum answers on the socket's own
// goroutine (stateless 503 with Retry-After, RFC 3261 §8.2.7) and what it
// leaves to sipgo: a re-INVITE, a retransmission of an admitted INVITE,
// anything that does not parse, and every INVITE while vnum keeps up.
func TestShedAtRead(t *testing.T) {
	t.Parallel()
	d := New(Options{Ports: freePorts{}, Parser: sip.NewParser()})
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	caller, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = caller.Close() })
	from := caller.LocalAddr().(*net.UDPAddr)

	invite := func(callID, toTag string) []byte {
		to := "<sip:17000000001-1234@127.0.0.1>"
		if toTag != "" {
			to += ";tag=" + toTag
		}
		return []byte("INVITE sip:17000000001-1234@127.0.0.1 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + from.String() + ";branch=z9hG4bK-" + callID + "\r\n" +
			"From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: " + to + "\r\nCall-ID: " + callID + "\r\n" +
			"CSeq: 1 INVITE\r\nContact: <sip:alice@" + from.String() + ">\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	}
	answered := func() *sip.Response {
		t.Helper()
		buf := make([]byte, 4096)
		require.NoError(t, caller.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := caller.Read(buf)
		require.NoError(t, err)
		msg, err := sip.ParseMessage(buf[:n])
		require.NoError(t, err)
		res, ok := msg.(*sip.Response)
		require.True(t, ok)
		return res
	}
	requireOverload := func(res *sip.Response) {
		t.Helper()
		require.Equal(t, 503, res.StatusCode, res.StartLine())
		require.NotNil(t, res.GetHeader("Retry-After"), "503 without Retry-After")
	}

	require.False(t, d.shedAtRead(conn, invite("c1", ""), from), "vnum keeps up: sipgo takes it")

	standingQueue(d, time.Second)
	require.True(t, d.shedAtRead(conn, invite("c2", ""), from), "saturated: refused at the socket")
	res := answered()
	requireOverload(res)
	tag, _ := res.To().Params.Get("tag")
	require.True(t, strings.HasPrefix(tag, StatelessTagPrefix), tag)
	require.Equal(t, "c2", res.CallID().Value())
	require.EqualValues(t, 1, d.Refused()[ReasonSaturated])

	require.True(t, d.shedAtRead(conn, invite("c2", ""), from), "its retransmission, shed again")
	again := answered()
	tag2, _ := again.To().Params.Get("tag")
	require.Equal(t, tag, tag2, "with the same To tag (RFC 3261 §8.2.7)")
	require.False(t, d.shedAtRead(conn, invite("c1", ""), from),
		"a retransmission of an INVITE passed on before the saturation, its handler maybe not yet run")

	ack := []byte("ACK sip:17000000001-1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + from.String() + ";branch=z9hG4bK-c2\r\n" +
		"From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:17000000001-1234@127.0.0.1>;tag=" + tag + "\r\nCall-ID: c2\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
	require.True(t, d.shedAtRead(conn, ack, from), "the ACK of a shed 503 is dropped")
	require.False(t, d.shedAtRead(conn, bytes.Replace(ack, []byte(StatelessTagPrefix), []byte("other-"), 1), from), "other ACKs go on")

	require.False(t, d.shedAtRead(conn, invite("c3", "b1"), from), "a re-INVITE is never shed")
	d.inflight.Store("c4", struct{}{})
	require.False(t, d.shedAtRead(conn, invite("c4", ""), from), "a retransmission of an admitted INVITE")
	require.False(t, d.shedAtRead(conn, []byte("INVITE garbage\r\n\r\n"), from), "what does not parse is sipgo's to answer")
	require.EqualValues(t, 2, d.Refused()[ReasonSaturated])
}

// TestInflightForgetsAfterTimerB: a Call-ID passed on whose INVITE never
// reached admission is forgotten once its caller can no longer
// retransmit (Timer B), and not before.
func TestInflightForgetsAfterTimerB(t *testing.T) {
	t.Parallel()
	d := New(Options{})
	now := time.Unix(1_700_000_000, 0)
	d.inflight.Store("old", now.Add(-inflightFor-time.Second).UnixNano())
	d.inflight.Store("recent", now.Add(-time.Second).UnixNano())
	d.sweepInflight(now)
	_, old := d.inflight.Load("old")
	_, recent := d.inflight.Load("recent")
	require.False(t, old)
	require.True(t, recent)
}

// recordingTx is a server transaction that notes how many INVITEs were
// admitted when a response was sent on it.
type recordingTx struct {
	sip.ServerTransaction
	d        *Door
	admitted int64
}

func (r *recordingTx) Respond(*sip.Response) error {
	r.admitted = r.d.admitted.Load()
	return nil
}

// TestChallengeGivesPlaceBackFirst: the 407 (or any final response)
// to an INVITE not yet a call goes out after its admission place is
// given back, so that the caller's signed INVITE, sent the moment the 407
// arrives, is not refused by calls.max_active for a place its own
// challenged INVITE still held.
func TestChallengeGivesPlaceBackFirst(t *testing.T) {
	t.Parallel()
	d := New(Options{MaxActive: 1})
	d.admitted.Add(1)
	tk := &Ticket{d: d, placed: true, inSetup: true, callID: "c1"}
	d.setup.Add(1)
	rec := &recordingTx{d: d}
	res := sip.NewResponse(407, "Proxy Authentication Required")
	require.NoError(t, tk.Guard(rec).Respond(res))
	require.Zero(t, rec.admitted, "the place was free when the 407 left")
	require.Zero(t, d.setup.Load())

	d.admitted.Add(1)
	tk = &Ticket{d: d, placed: true, inSetup: true}
	require.NoError(t, tk.Guard(rec).Respond(sip.NewResponse(100, "Trying")))
	require.EqualValues(t, 1, rec.admitted, "a provisional response keeps the place")
}

// TestDrainRetryAfterRounding: while draining, a 503 tells the caller to
// come back after calls.drain_timeout in whole seconds, rounded up, and
// at least one.
func TestDrainRetryAfterRounding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		drain time.Duration
		want  string
	}{
		{time.Millisecond, "1"}, {time.Second, "1"}, {1001 * time.Millisecond, "2"}, {45 * time.Second, "45"},
	} {
		d := New(Options{DrainTimeout: tc.drain})
		d.Drain()
		require.Equal(t, tc.want, d.RetryAfter(503, false)[0].Value(), "drain timeout %s", tc.drain)
	}
}

// TestRetryAfter: only a 503 of vnum's own says when to come back; a
// carrier that could not reach B is not vnum out of service.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	d := New(Options{DrainTimeout: 30 * time.Second})
	require.Equal(t, RetryAfterBusy, d.RetryAfter(503, false)[0].Value())
	require.Nil(t, d.RetryAfter(503, true), "the trunk's failure")
	require.Nil(t, d.RetryAfter(500, false))
	require.Nil(t, d.RetryAfter(486, false))
	d.Drain()
	require.Equal(t, "30", d.RetryAfter(503, false)[0].Value())
	require.Nil(t, d.RetryAfter(503, true), "the trunk's failure, draining or not")
}
