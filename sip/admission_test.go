package sip

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/sipua"
)

// countingRouter counts every store read and write of a new call, and can
// hold IsHostNumber until gate closes (a store or process slow to set
// calls up).
type countingRouter struct {
	*fakeRouter
	calls   atomic.Int64
	gate    chan struct{} // nil: IsHostNumber answers at once
	entered chan struct{} // IsHostNumber was called and waits for gate
}

func (r *countingRouter) Account(ctx context.Context, user string) (Account, error) {
	r.calls.Add(1)
	return r.fakeRouter.Account(ctx, user)
}

func (r *countingRouter) IsHostNumber(ctx context.Context, x string) (bool, error) {
	r.calls.Add(1)
	if r.gate != nil {
		r.entered <- struct{}{}
		select {
		case <-r.gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return r.fakeRouter.IsHostNumber(ctx, x)
}

func (r *countingRouter) Resolve(ctx context.Context, x, ext, merchant string) (Target, error) {
	r.calls.Add(1)
	return r.fakeRouter.Resolve(ctx, x, ext, merchant)
}

func (r *countingRouter) Callback(ctx context.Context, x, caller string) (Callback, error) {
	r.calls.Add(1)
	return r.fakeRouter.Callback(ctx, x, caller)
}

func (r *countingRouter) StartCall(ctx context.Context, c *CDR) error {
	r.calls.Add(1)
	return r.fakeRouter.StartCall(ctx, c)
}

// newCountingEnv is a test server whose router is a countingRouter.
func newCountingEnv(t *testing.T, tweak func(*Options), gate bool) (*testEnv, *countingRouter) {
	t.Helper()
	var cr *countingRouter
	e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"}, tweak, func(f *fakeRouter) Router {
		cr = &countingRouter{fakeRouter: f}
		if gate {
			cr.gate, cr.entered = make(chan struct{}), make(chan struct{}, 1)
		}
		return cr
	})
	return e, cr
}

// invite sends one new INVITE for dialled from p, without answering a
// challenge, and returns vnum's final response.
func invite(t *testing.T, e *testEnv, p *sipua.Softphone, dialled string) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: dialled, Host: "127.0.0.1", Port: int(e.vnum.Port())})
	req.SetBody(p.SDP(sipua.PCMU))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(&p.Contact)
	res, err := p.Client.Do(ctx, req)
	require.NoError(t, err)
	return res
}

func cdrCount(r *fakeRouter) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cdrs)
}

// requireOverload: a 503 with Retry-After, as README "SIP behaviour in short" wants for a call
// vnum cannot take.
func requireOverload(t *testing.T, res *sip.Response) {
	t.Helper()
	require.Equal(t, 503, res.StatusCode, res.StartLine())
	require.NotNil(t, res.GetHeader("Retry-After"), "503 without Retry-After")
}

// TestMaxActiveRefusesAtOnce: with calls.max_active 1 and a call in
// progress, a second call gets 503 with Retry-After on its first INVITE,
// before any store lookup, RTP port or CDR; the first call goes on and
// ends answered.
func TestMaxActiveRefusesAtOnce(t *testing.T) {
	t.Parallel()
	e, cr := newCountingEnv(t, func(o *Options) { o.MaxActive = 1 }, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := e.phone.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err)
	nextInvite(t, e.carrier)
	nextSession(t, e.carrier)
	e.waitState(StateBridged)

	storeCalls, inUse, cdrs := cr.calls.Load(), e.ports.InUse(), cdrCount(e.router)
	other, err := sipua.NewSoftphone("alice", "s3cret", nil)
	require.NoError(t, err)
	t.Cleanup(other.Close)
	requireOverload(t, invite(t, e, other, testHost+"-"+testExt))
	require.Equal(t, storeCalls, cr.calls.Load(), "the refused INVITE made no store call")
	require.Equal(t, inUse, e.ports.InUse(), "the refused INVITE opened no RTP port")
	require.Equal(t, cdrs, cdrCount(e.router), "a refused INVITE leaves no CDR")
	require.EqualValues(t, 1, e.srv.RefusedCalls()[refusedMaxActive])

	// The call in progress is unharmed: its media still flows both ways.
	aMedia, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	go func() { _ = sipua.SendAudio(ctx, e.phone.RTP, aMedia, 0xA11CE, 50) }()
	require.Greater(t, sipua.CountRTP(e.carrier.RTP, 1500*time.Millisecond, 0xA11CE), 10, "the carrier hears the caller")
	require.Equal(t, 1, e.srv.ActiveCalls())
	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	e.waitNoCalls()

	// The place is free again.
	d, err = other.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err)
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	e.router.waitEnded(t)
}

// TestNoFreePortsRefusedUpFront: a pool too small for a call's two pairs
// refuses the INVITE at once (503, Retry-After), binding no port and
// asking the store nothing, rather than after answering.
func TestNoFreePortsRefusedUpFront(t *testing.T) {
	t.Parallel()
	// One pair, never opened: Available says no before any bind is tried.
	ports, err := media.NewPorts("127.0.0.1", 40000, 40001)
	require.NoError(t, err)
	e, cr := newCountingEnv(t, func(o *Options) { o.Ports = ports }, false)
	requireOverload(t, invite(t, e, e.phone, testHost+"-"+testExt))
	require.Zero(t, cr.calls.Load(), "no store call")
	require.Zero(t, ports.InUse(), "no port opened")
	require.Zero(t, cdrCount(e.router))
	require.EqualValues(t, 1, e.srv.RefusedCalls()[refusedRTPPorts])
}

// TestInviteRatePerSource: with security.invite_rate 2, the third new
// INVITE within a second from one source gets 503 with Retry-After
// before it is challenged; a second later the source may call again.
// The trunk's sources are not limited.
func TestInviteRatePerSource(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	e, cr := newCountingEnv(t, func(o *Options) { o.InviteRate, o.Now = 2, clock.Now }, false)
	require.Equal(t, 407, invite(t, e, e.phone, testHost).StatusCode)
	require.Equal(t, 407, invite(t, e, e.phone, testHost).StatusCode)
	requireOverload(t, invite(t, e, e.phone, testHost))
	require.EqualValues(t, 1, e.srv.RefusedCalls()[refusedInviteRate])
	clock.Advance(500 * time.Millisecond)
	require.Equal(t, 407, invite(t, e, e.phone, testHost).StatusCode, "half a second refills one INVITE")
	requireOverload(t, invite(t, e, e.phone, testHost))
	clock.Advance(time.Second)
	require.Equal(t, 407, invite(t, e, e.phone, testHost).StatusCode)
	require.Zero(t, cr.calls.Load(), "no store call for a challenge or a refusal")

	trunk, _ := newCountingEnv(t, func(o *Options) {
		o.InviteRate, o.Now = 2, clock.Now
		trunkFromLoopback(o)
	}, false)
	car, err := sipua.NewSoftphone(testNational, "", nil)
	require.NoError(t, err)
	t.Cleanup(car.Close)
	for range 5 {
		require.Equal(t, 404, invite(t, trunk, car, "19999999999").StatusCode, "the trunk is not rate limited")
	}
	require.Zero(t, trunk.srv.admission.rate.Load().sources(), "trunk sources are not even remembered")
	require.Zero(t, trunk.srv.RefusedCalls()[refusedInviteRate])
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

// TestSaturatedRefusesAtOnce: while as many INVITEs as Options.MaxSetup
// are still being set up (here one held in its store lookup), a new one
// gets 503 with Retry-After at once; the held one then becomes a call.
func TestSaturatedRefusesAtOnce(t *testing.T) {
	t.Parallel()
	e, cr := newCountingEnv(t, func(o *Options) {
		o.MaxSetup = 1
		trunkFromLoopback(o)
	}, true)
	courier, err := sipua.NewSoftphone(testNational, "", nil)
	require.NoError(t, err)
	t.Cleanup(courier.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		d   *sipgo.DialogClientSession
		err error
	}
	first := make(chan result, 1)
	go func() {
		d, err := courier.Call(ctx, e.vnum, testHost+"-"+testExt)
		first <- result{d, err}
	}()
	<-cr.entered // the first INVITE waits in its store lookup

	other, err := sipua.NewSoftphone("13700137000", "", nil)
	require.NoError(t, err)
	t.Cleanup(other.Close)
	requireOverload(t, invite(t, e, other, testHost+"-"+testExt))
	require.EqualValues(t, 1, cr.calls.Load(), "only the held INVITE asked the store")
	require.EqualValues(t, 1, e.srv.RefusedCalls()[refusedSaturated])

	close(cr.gate)
	r := <-first
	require.NoError(t, r.err, "the INVITE in setup becomes a call")
	nextSession(t, e.carrier)
	require.NoError(t, r.d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
}

// newLateEnv is a counting test server with the queue-delay check on and
// a clock that runs ahead of the kernel's by what ahead holds: set to a
// second, every datagram vnum reads looks a second old.
func newLateEnv(t *testing.T) (*testEnv, *countingRouter, *atomic.Int64) {
	t.Helper()
	ahead := new(atomic.Int64)
	e, cr := newCountingEnv(t, func(o *Options) {
		o.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
		o.MaxQueueDelay = DefaultMaxQueueDelay
	}, false)
	return e, cr, ahead
}

// TestQueueDelayRefusesAsSaturated: when the SIP datagrams vnum reads
// have waited in the socket longer than Options.MaxQueueDelay (here a
// server clock ahead of the kernel's by a second: every datagram looks a
// second old), a new INVITE gets 503 with Retry-After before any store
// lookup, counted as saturated; once datagrams are read fresh again calls
// are taken as before.
func TestQueueDelayRefusesAsSaturated(t *testing.T) {
	t.Parallel()
	e, cr, ahead := newLateEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ahead.Store(int64(time.Second))
	standingQueue(t, e)
	storeCalls := cr.calls.Load()
	requireOverload(t, invite(t, e, e.phone, testHost+"-"+testExt))
	require.Equal(t, storeCalls, cr.calls.Load(), "the refused INVITE made no store call")
	require.EqualValues(t, 1, e.srv.RefusedCalls()[refusedSaturated])
	require.GreaterOrEqual(t, e.srv.QueueDelay(), time.Second)

	ahead.Store(0)
	d, err := e.phone.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err, "datagrams read fresh: the call is taken")
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	require.Less(t, e.srv.QueueDelay(), time.Second)
}

// standingQueue sends vnum enough OPTIONS that the queue delay it reads
// stands for all of the last datagrams, not for one.
func standingQueue(t *testing.T, e *testEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range queueSamples {
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(e.vnum.Port())})
		res, err := e.phone.Client.Do(ctx, req)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode)
	}
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

// TestSaturationSparesLightSource: while vnum is saturated, a flood from
// one address is refused, and a softphone on another address sending
// little still gets its call through (README "SIP behaviour in short": refuse instead of
// collapsing, and not at the expense of every other caller).
func TestSaturationSparesLightSource(t *testing.T) {
	t.Parallel()
	e, _, ahead := newLateEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ahead.Store(int64(time.Second)) // every datagram read a second late
	standingQueue(t, e)

	for range 20 {
		requireOverload(t, invite(t, e, e.phone, testHost+"-"+testExt))
	}
	require.EqualValues(t, 20, e.srv.RefusedCalls()[refusedSaturated])

	light, err := sipua.NewSoftphoneAt(netip.MustParseAddr("127.0.0.2"), "alice", "s3cret", nil)
	require.NoError(t, err)
	t.Cleanup(light.Close)
	d, err := light.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err, "a light source is taken while the flood is refused")
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	require.EqualValues(t, 20, e.srv.RefusedCalls()[refusedSaturated])
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

// TestShedAtRead: what a saturated vnum answers on the socket's own
// goroutine (stateless 503 with Retry-After, RFC 3261 §8.2.7) and what it
// leaves to sipgo: a re-INVITE, a retransmission of an admitted INVITE,
// anything that does not parse, and every INVITE while vnum keeps up.
func TestShedAtRead(t *testing.T) {
	t.Parallel()
	e, _, ahead := newLateEnv(t)
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

	require.False(t, e.srv.shedAtRead(conn, invite("c1", ""), from), "vnum keeps up: sipgo takes it")

	ahead.Store(int64(time.Second))
	standingQueue(t, e)
	require.True(t, e.srv.shedAtRead(conn, invite("c2", ""), from), "saturated: refused at the socket")
	res := answered()
	requireOverload(t, res)
	tag, _ := res.To().Params.Get("tag")
	require.True(t, strings.HasPrefix(tag, shedTagPrefix), tag)
	require.Equal(t, "c2", res.CallID().Value())
	require.EqualValues(t, 1, e.srv.RefusedCalls()[refusedSaturated])

	require.True(t, e.srv.shedAtRead(conn, invite("c2", ""), from), "its retransmission, shed again")
	again := answered()
	tag2, _ := again.To().Params.Get("tag")
	require.Equal(t, tag, tag2, "with the same To tag (RFC 3261 §8.2.7)")
	require.False(t, e.srv.shedAtRead(conn, invite("c1", ""), from),
		"a retransmission of an INVITE passed on before the saturation, its handler maybe not yet run")

	ack := []byte("ACK sip:17000000001-1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + from.String() + ";branch=z9hG4bK-c2\r\n" +
		"From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:17000000001-1234@127.0.0.1>;tag=" + tag + "\r\nCall-ID: c2\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
	require.True(t, e.srv.shedAtRead(conn, ack, from), "the ACK of a shed 503 is dropped")
	require.False(t, e.srv.shedAtRead(conn, bytes.Replace(ack, []byte(shedTagPrefix), []byte("other-"), 1), from), "other ACKs go on")

	require.False(t, e.srv.shedAtRead(conn, invite("c3", "b1"), from), "a re-INVITE is never shed")
	e.srv.admission.inflight.Store("c4", struct{}{})
	require.False(t, e.srv.shedAtRead(conn, invite("c4", ""), from), "a retransmission of an admitted INVITE")
	require.False(t, e.srv.shedAtRead(conn, []byte("INVITE garbage\r\n\r\n"), from), "what does not parse is sipgo's to answer")
	require.EqualValues(t, 2, e.srv.RefusedCalls()[refusedSaturated])
}

// TestInflightForgetsAfterTimerB: a Call-ID passed on whose INVITE never
// reached admission is forgotten once its caller can no longer
// retransmit (Timer B), and not before.
func TestInflightForgetsAfterTimerB(t *testing.T) {
	t.Parallel()
	a := newAdmission(Options{})
	now := time.Unix(1_700_000_000, 0)
	a.inflight.Store("old", now.Add(-inflightFor-time.Second).UnixNano())
	a.inflight.Store("recent", now.Add(-time.Second).UnixNano())
	a.sweepInflight(now)
	_, old := a.inflight.Load("old")
	_, recent := a.inflight.Load("recent")
	require.False(t, old)
	require.True(t, recent)
}

// recordingTx is a server transaction that notes how many INVITEs were
// admitted when a response was sent on it.
type recordingTx struct {
	sip.ServerTransaction
	a        *admission
	admitted int64
}

func (r *recordingTx) Respond(*sip.Response) error {
	r.admitted = r.a.admitted.Load()
	return nil
}

// TestChallengeGivesPlaceBackFirst: the 407 (or any final response)
// to an INVITE not yet a call goes out after its admission place is
// given back, so that the caller's signed INVITE, sent the moment the 407
// arrives, is not refused by calls.max_active for a place its own
// challenged INVITE still held.
func TestChallengeGivesPlaceBackFirst(t *testing.T) {
	t.Parallel()
	a := newAdmission(Options{MaxActive: 1})
	a.admitted.Add(1)
	tk := &ticket{a: a, placed: true, inSetup: true, callID: "c1"}
	a.setup.Add(1)
	rec := &recordingTx{a: a}
	res := sip.NewResponse(407, "Proxy Authentication Required")
	require.NoError(t, refusing{ServerTransaction: rec, t: tk}.Respond(res))
	require.Zero(t, rec.admitted, "the place was free when the 407 left")
	require.Zero(t, a.setup.Load())

	a.admitted.Add(1)
	tk = &ticket{a: a, placed: true, inSetup: true}
	require.NoError(t, refusing{ServerTransaction: rec, t: tk}.Respond(sip.NewResponse(100, "Trying")))
	require.EqualValues(t, 1, rec.admitted, "a provisional response keeps the place")
}
