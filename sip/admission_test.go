package sip

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
	"github.com/vnum/vnum/sip/sipua"
)

// countingRouter counts every store read and write of a new call, and can
// hold the first lookup of a call's setup (IsHostNumber, or a direct
// dial's binding) until gate closes (a store or process slow to set calls
// up).
type countingRouter struct {
	*fakeRouter
	calls   atomic.Int64
	gate    chan struct{} // nil: lookups answer at once
	entered chan struct{} // a lookup was made and waits for gate
}

// hold waits for gate, when there is one, having said so on entered.
func (r *countingRouter) hold(ctx context.Context) error {
	if r.gate == nil {
		return nil
	}
	select {
	case r.entered <- struct{}{}:
	default:
	}
	select {
	case <-r.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *countingRouter) Account(ctx context.Context, user string) (Account, error) {
	r.calls.Add(1)
	return r.fakeRouter.Account(ctx, user)
}

func (r *countingRouter) IsHostNumber(ctx context.Context, x string) (bool, error) {
	r.calls.Add(1)
	if err := r.hold(ctx); err != nil {
		return false, err
	}
	return r.fakeRouter.IsHostNumber(ctx, x)
}

func (r *countingRouter) Resolve(ctx context.Context, x, ext, merchant string) (Target, error) {
	r.calls.Add(1)
	if err := r.hold(ctx); err != nil {
		return Target{}, err
	}
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
	require.EqualValues(t, 1, e.srv.RefusedCalls()[frontdoor.ReasonMaxActive])

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
	require.EqualValues(t, 1, e.srv.RefusedCalls()[frontdoor.ReasonRTPPorts])
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
	require.EqualValues(t, 1, e.srv.RefusedCalls()[frontdoor.ReasonInviteRate])
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
	require.Zero(t, trunk.srv.RefusedCalls()[frontdoor.ReasonInviteRate])
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
	require.EqualValues(t, 1, e.srv.RefusedCalls()[frontdoor.ReasonSaturated])

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
		o.MaxQueueDelay = frontdoor.DefaultMaxQueueDelay
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
	require.EqualValues(t, 1, e.srv.RefusedCalls()[frontdoor.ReasonSaturated])
	require.GreaterOrEqual(t, e.srv.QueueDelay(), time.Second)

	ahead.Store(0)
	d, err := e.phone.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err, "datagrams read fresh: the call is taken")
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	require.Less(t, e.srv.QueueDelay(), time.Second)
}

// standingQueue sends vnum OPTIONS until the queue delay it reads stands
// for all of the last datagrams, not for one (every datagram looks a
// second old).
func standingQueue(t *testing.T, e *testEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; e.srv.QueueDelay() < time.Second; i++ {
		require.Less(t, i, 100, "the queue delay never stood at a second")
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(e.vnum.Port())})
		res, err := e.phone.Client.Do(ctx, req)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode)
	}
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
	require.EqualValues(t, 20, e.srv.RefusedCalls()[frontdoor.ReasonSaturated])

	light, err := sipua.NewSoftphoneAt(netip.MustParseAddr("127.0.0.2"), "alice", "s3cret", nil)
	require.NoError(t, err)
	t.Cleanup(light.Close)
	d, err := light.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err, "a light source is taken while the flood is refused")
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	require.EqualValues(t, 20, e.srv.RefusedCalls()[frontdoor.ReasonSaturated])
}
