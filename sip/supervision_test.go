package sip

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// observed is what a caller saw of its INVITE: the final response, and
// the wire it came over.
type observed struct {
	p      *sipua.Softphone
	callID string

	mu    sync.Mutex
	final *sip.Response
	err   error
}

// provisional is the statuses of the provisional responses to the INVITE
// in the order they reached the caller's socket (sipgo hands responses
// over on goroutines of their own, so the order its callbacks see may
// differ), repeats folded: an INVITE challenged (407) and sent again with
// credentials gets its 100 Trying twice.
func (o *observed) provisional() []int {
	var got []int
	for _, m := range o.p.Received() {
		status, ok := inviteStatus(m, o.callID)
		if ok && status < 200 {
			got = append(got, status)
		}
	}
	return slices.Compact(got)
}

// inviteStatus is the status of m when m is a response to an INVITE of
// the call callID.
func inviteStatus(m, callID string) (int, bool) {
	if !strings.HasPrefix(m, "SIP/2.0 ") || len(m) < 11 || !strings.Contains(m, callID) {
		return 0, false
	}
	res, err := sip.ParseMessage([]byte(m))
	if err != nil {
		return 0, false
	}
	r, ok := res.(*sip.Response)
	if !ok || r.CallID() == nil || r.CallID().Value() != callID || r.CSeq() == nil || r.CSeq().MethodName != sip.INVITE {
		return 0, false
	}
	return r.StatusCode, true
}

// dialObserved places a call from p and watches its INVITE. The dialog
// comes back at once; done closes when the INVITE has its final response
// (or the context ends).
func dialObserved(ctx context.Context, t testing.TB, p *sipua.Softphone, vnum netip.AddrPort, dialled string) (*sipgo.DialogClientSession, *observed, <-chan struct{}) {
	t.Helper()
	d, err := p.Invite(ctx, vnum, dialled)
	require.NoError(t, err)
	o := &observed{p: p, callID: d.InviteRequest.CallID().Value()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := d.WaitAnswer(ctx, sipgo.AnswerOptions{Username: p.User, Password: p.Password})
		o.mu.Lock()
		o.err, o.final = err, d.InviteResponse
		o.mu.Unlock()
		if err == nil {
			_ = d.Ack(ctx)
		}
	}()
	return d, o, done
}

// TestDirectDialAnswerSupervision: a direct dial (X-E) is answered only
// when B answers. The caller gets 100 Trying, then 180 while B rings, and
// the 200 after the carrier's own 200; the CDR's answer time is B's.
func TestDirectDialAnswerSupervision(t *testing.T) {
	t.Parallel()
	e := newTestEnvWith(t, sipua.CarrierOptions{Mode: "answer", RingFor: 1500 * time.Millisecond}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, o, done := dialObserved(ctx, t, e.phone, e.vnum, testHost+"-"+testExt)
	nextInvite(t, e.carrier)
	if _, err := e.carrier.NextRinging(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// B rings: the caller has 100 and 180, and no answer.
	require.Eventually(t, func() bool { return len(o.provisional()) >= 2 }, 5*time.Second, 5*time.Millisecond)
	select {
	case <-done:
		t.Fatalf("the caller's INVITE ended while B rang: %v", o.err)
	default:
	}
	require.Equal(t, []int{100, 180}, o.provisional())
	ds := nextSession(t, e.carrier) // B answered
	<-done
	require.NoError(t, o.err)
	require.Equal(t, 200, o.final.StatusCode)
	require.Equal(t, []int{100, 180}, o.provisional(), "no 183 without early media")
	require.NoError(t, ds.Bye(ctx))
	require.Eventually(t, func() bool { return d.LoadState() == sip.DialogStateEnded }, 5*time.Second, 10*time.Millisecond)
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.True(t, cdr.AnsweredAt.Sub(cdr.RingingAt) >= time.Second, "answered when B answered, after ringing")
	assertPrivate(t, e.phone, e.carrier, d.InviteRequest.CallID().Value(), fromTag(d.InviteRequest))
	e.waitNoCalls()
	e.assertLogsPrivate()
}

// TestDirectDialRecordWrites: a direct dial's binding is looked up before
// its record is first written, so that the record starts with it: a call
// answered and ended is three writes (start, answer, end), not four. A
// wrong extension's record starts with the extension and no binding.
func TestDirectDialRecordWrites(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, o, done := dialObserved(ctx, t, e.phone, e.vnum, testHost+"-"+testExt)
	ds := nextSession(t, e.carrier)
	<-done
	require.NoError(t, o.err)
	require.NoError(t, ds.Bye(ctx))
	require.Eventually(t, func() bool { return d.LoadState() == sip.DialogStateEnded }, 5*time.Second, 10*time.Millisecond)
	cdr := e.router.waitEnded(t)
	writes := e.router.writesOf(cdr.ID)
	require.Len(t, writes, 3, "start, answer, end")
	require.Zero(t, e.router.hostLookups(), "a binding found names a host number: the pool is not asked")
	first := writes[0]
	require.Equal(t, testExt, first.Extension)
	require.NotEmpty(t, first.BindingID, "the first write has the binding")
	require.Equal(t, cdr.BindingID, first.BindingID)
	require.Equal(t, cdr.Order, first.Order)
	require.True(t, first.AnsweredAt.IsZero())
	require.False(t, writes[1].AnsweredAt.IsZero())
	require.False(t, writes[2].EndedAt.IsZero())
	e.waitNoCalls()

	// No such extension: one attempt, the record starts with what was
	// dialled, no binding.
	_, o, done = dialObserved(ctx, t, e.phone, e.vnum, testHost+"-9999")
	<-done
	require.Error(t, o.err)
	cdr = e.router.waitEnded(t)
	writes = e.router.writesOf(cdr.ID)
	require.Equal(t, "9999", writes[0].Extension)
	require.Empty(t, writes[0].BindingID)
	require.Empty(t, cdr.BindingID)
	require.Equal(t, 1, e.router.hostLookups(), "no binding found: the pool says whether X is ours")
	e.waitNoCalls()
	e.assertLogsPrivate()
}

// TestDirectDialTryingAtOnce: vnum's 100 Trying leaves before anything
// that may take time: with the binding lookup stalled, the caller (or a
// proxy in front) has its 100 while the store has not answered.
func TestDirectDialTryingAtOnce(t *testing.T) {
	t.Parallel()
	var sr *stallingRouter
	e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"},
		func(o *Options) { o.StoreTimeout = 2 * time.Second },
		func(r *fakeRouter) Router {
			sr = &stallingRouter{fakeRouter: r, stall: "resolve", deadlines: make(chan time.Duration, 8)}
			return sr
		})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, o, done := dialObserved(ctx, t, e.phone, e.vnum, testHost+"-"+testExt)
	require.Eventually(t, func() bool { return len(o.provisional()) >= 1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 100, o.provisional()[0])
	select {
	case <-done:
		t.Fatal("the INVITE ended before the test looked")
	default:
	}
	<-done
	require.Positive(t, <-sr.deadlines, "the lookup stalled")
	requireRefusedUnanswered(t, o.err, 503, e.phone.Received())
	e.waitNoCalls()
}

// TestDirectDialFailures: a direct dial that cannot reach B ends with a
// final status that says why, with a Reason header carrying the Q.850
// cause (RFC 3326), any prompt played before it as early media (183), and
// never a 200 followed by a BYE. Nothing is billed.
func TestDirectDialFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		co          sipua.CarrierOptions
		dialled     string
		tweak       func(*Options)
		status      int
		cause       string
		disposition string
		reachB      bool
	}{
		{name: "busy", co: sipua.CarrierOptions{Mode: "busy"}, dialled: testHost + "-" + testExt,
			status: 486, cause: "cause=17", disposition: "busy", reachB: true},
		{name: "rejected", co: sipua.CarrierOptions{Mode: "reject"}, dialled: testHost + "-" + testExt,
			status: 480, cause: "cause=21", disposition: "rejected", reachB: true},
		{name: "no answer", co: sipua.CarrierOptions{Mode: "ring"}, dialled: testHost + "-" + testExt,
			tweak: func(o *Options) { o.RingTimeout = time.Second }, status: 480, cause: "cause=19", disposition: "no_answer", reachB: true},
		{name: "wrong extension", co: sipua.CarrierOptions{Mode: "answer"}, dialled: testHost + "-9999",
			status: 404, cause: "cause=1", disposition: "invalid_extension"},
		{name: "trunk unreachable", co: sipua.CarrierOptions{Mode: "answer"}, dialled: testHost + "-" + testExt,
			tweak: func(o *Options) {
				o.TrunkOutbound = "sip:" + deadUDPAddr(t) + ";transport=udp"
				o.RingTimeout = time.Second
			}, status: 503, cause: "cause=102", disposition: "failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnvWith(t, tc.co, tc.tweak)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d, o, done := dialObserved(ctx, t, e.phone, e.vnum, tc.dialled)
			<-done
			res := requireRefusedUnanswered(t, o.err, tc.status, e.phone.Received())
			reason := res.GetHeader("Reason")
			require.NotNil(t, reason, "a Reason header says why (RFC 3326)")
			require.Contains(t, reason.Value(), "Q.850;")
			require.Contains(t, reason.Value(), tc.cause+";")
			if tc.status == 503 {
				require.Nil(t, res.GetHeader("Retry-After"), "B out of reach is not vnum out of service")
			}
			require.Contains(t, o.provisional(), 183, "the prompt came as early media")
			require.Equal(t, 100, o.provisional()[0])
			cdr := e.router.waitEnded(t)
			require.Equal(t, tc.disposition, string(cdr.Disposition))
			require.True(t, cdr.AnsweredAt.IsZero())
			if !tc.reachB {
				require.Zero(t, e.carrier.Pending(), "no INVITE reaches the trunk")
			}
			assertPrivate(t, e.phone, e.carrier, d.InviteRequest.CallID().Value(), fromTag(d.InviteRequest))
			e.waitNoCalls()
			e.assertLogsPrivate()
		})
	}
}

// deadUDPAddr is a loopback UDP address nothing listens on: a trunk that
// cannot be reached.
func deadUDPAddr(t testing.TB) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	addr := c.LocalAddr().String()
	require.NoError(t, c.Close())
	return addr
}

// TestDirectDialEarlyMedia: B's early media reaches a caller not yet
// answered in a 183 with vnum's SDP, and the 200 that follows B's answer
// carries the same SDP.
func TestDirectDialEarlyMedia(t *testing.T) {
	t.Parallel()
	e := newTestEnvWith(t, sipua.CarrierOptions{Mode: "answer", RingFor: 2 * time.Second, EarlyMedia: true}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, o, done := dialObserved(ctx, t, e.phone, e.vnum, testHost+"-"+testExt)
	nextInvite(t, e.carrier)
	require.Greater(t, sipua.CountRTP(e.phone.RTP, time.Second, sipua.EarlyMediaSSRC), 20, "the caller hears B's early media")
	select {
	case <-done:
		t.Fatal("answered before B")
	default:
	}
	require.Equal(t, []int{100, 183}, o.provisional())
	nextSession(t, e.carrier)
	<-done
	require.NoError(t, o.err)
	var early string
	for _, m := range e.phone.Received() {
		if strings.HasPrefix(m, "SIP/2.0 183") {
			early = m
		}
	}
	require.NotEmpty(t, early)
	require.Equal(t, string(o.final.Body()), early[strings.Index(early, "\r\n\r\n")+4:], "the 200's SDP is the 183's")
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	e.waitNoCalls()
}

// TestIVRAnsweredBeforeB: the one call answered before B is an IVR call in
// answer mode, whose caller must key E; B's ringing then comes as vnum's
// ringback tone in the answered call.
func TestIVRAnsweredBeforeB(t *testing.T) {
	t.Parallel()
	e := newTestEnvWith(t, sipua.CarrierOptions{Mode: "ring"}, func(o *Options) { o.RingTimeout = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, o, done := dialObserved(ctx, t, e.phone, e.vnum, testHost)
	<-done
	require.NoError(t, o.err)
	require.Equal(t, []int{100}, o.provisional())
	require.Zero(t, e.carrier.Pending(), "answered before anything reached the trunk")
	to, err := sipua.MediaAddr(o.final.Body())
	require.NoError(t, err)
	require.NoError(t, sipua.SendDigits(e.phone.RTP, to, 101, testExt))
	nextInvite(t, e.carrier)
	// B never answers: a prompt, then vnum's BYE.
	require.Eventually(t, func() bool { return d.LoadState() == sip.DialogStateEnded }, 15*time.Second, 10*time.Millisecond)
	require.Equal(t, "no_answer", string(e.router.waitEnded(t).Disposition))
	e.waitNoCalls()
}

// TestCallbackAnswerSupervision: the consignee calling X back is answered
// only when the party rung answers.
func TestCallbackAnswerSupervision(t *testing.T) {
	t.Parallel()
	e := newTestEnvWith(t, sipua.CarrierOptions{Mode: "answer", RingFor: time.Second}, trunkFromLoopback)
	e.router.addCallback(testHost, testNational, Callback{
		Target: Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee},
		Number: "13700137000",
	})
	b := newConsigneePhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, o, done := dialObserved(ctx, t, b, e.vnum, testHost)
	nextInvite(t, e.carrier)
	require.Eventually(t, func() bool { return len(o.provisional()) >= 2 }, 5*time.Second, 5*time.Millisecond)
	select {
	case <-done:
		t.Fatal("answered before the party rung")
	default:
	}
	nextSession(t, e.carrier)
	<-done
	require.NoError(t, o.err)
	require.Equal(t, []int{100, 180}, o.provisional())
	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "callback", string(cdr.Direction))
	e.waitNoCalls()
}

// TestCauseTable pins the Q.850 causes of the endings that say why B was
// not reached, and that the others carry none.
func TestCauseTable(t *testing.T) {
	for _, tc := range []struct {
		r      endReason
		status int
		cause  int
		ok     bool
	}{
		{reasonBusy, 486, 17, true},
		{reasonBusy, 600, 17, true},
		{reasonRejected, 603, 21, true},
		{reasonRejected, 404, 1, true},
		{reasonRejected, 484, 28, true},
		{reasonRejected, 499, 21, true},
		{reasonTrunkFailed, 599, 127, true},
		{reasonNoAnswer, 408, 19, true},
		{reasonNoAnswer, 480, 18, true},
		{reasonTrunkFailed, 503, 41, true},
		{reasonTrunkFailed, 502, 38, true},
		{reasonTrunkFailed, 408, 102, true},
		{reasonTrunkFailed, 0, 38, true},
		{reasonInvalidExtension, 404, 1, true},
		{reasonExpired, 410, 22, true},
		{reasonCancelled, 487, 0, false},
		{reasonShutdown, 503, 0, false},
		{reasonStoreSlow, 503, 0, false},
	} {
		c, ok := causeFor(tc.r, tc.status)
		require.Equal(t, tc.ok, ok, "%v %d", tc.r, tc.status)
		require.Equal(t, tc.cause, c.cause, "%v %d", tc.r, tc.status)
	}
}
