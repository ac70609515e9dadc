package sip

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/sip/sipua"
)

func TestCarrierChallengesLegB(t *testing.T) {
	t.Parallel()
	e := newTestEnvWith(t, sipua.CarrierOptions{Mode: "answer", Username: "vnum-trunk", Password: "trunk-secret"}, func(o *Options) {
		o.TrunkUsername, o.TrunkPassword = "vnum-trunk", "trunk-secret"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	inv := nextInvite(t, e.carrier)
	require.NotNil(t, inv.GetHeader("Proxy-Authorization"), "vnum answers the carrier's challenge")
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
}

func TestTrunkCallerNeedsNoCredentials(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) {
		o.InboundCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	courier, err := sipua.NewSoftphone("13700137000", "", nil)
	require.NoError(t, err)
	t.Cleanup(courier.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := courier.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err)
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "+8613700137000", cdr.Caller, "a PSTN caller is recorded by its normalised number")
	require.Equal(t, callrec.CallerNumber, cdr.CallerKind, "a call back may dial the number")
	require.Equal(t, "m1", cdr.Merchant, "the binding's merchant pays")
}

func TestForeignAndExpiredExtensions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		setup       func(*fakeRouter)
		disposition string
		attempts    int
	}{
		{name: "another merchant's binding is invalid", attempts: 3, disposition: "invalid_extension",
			setup: func(r *fakeRouter) {
				r.addBinding(Target{BindingID: "b2", Merchant: "m2", Order: "o2", Host: testHost, Extension: "5678", Consignee: "+8613900139000"})
			}},
		{name: "quarantined extension hears expired", attempts: 1, disposition: "expired",
			setup: func(r *fakeRouter) { r.expire(testHost, "5678") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, "answer", nil)
			tc.setup(e.router)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			d, err := e.phone.Call(ctx, e.vnum, testHost)
			require.NoError(t, err)
			to, err := sipua.MediaAddr(d.InviteResponse.Body())
			require.NoError(t, err)
			for i := 0; i < tc.attempts; i++ {
				if i > 0 {
					e.waitLogged("invalid extension", i) // the next attempt begins
				}
				require.NoError(t, sipua.SendDigits(e.phone.RTP, to, 101, "5678"))
			}
			require.Eventually(t, func() bool { return d.LoadState() == sip.DialogStateEnded }, 30*time.Second, 20*time.Millisecond)
			cdr := e.router.waitEnded(t)
			require.Equal(t, tc.disposition, string(cdr.Disposition))
			require.Empty(t, cdr.BindingID)
			require.Zero(t, e.carrier.Pending())
			require.NotContains(t, e.logs.String(), `msg="no extension keyed"`, "every attempt was keyed, none timed out")
			assertPrivate(t, e.phone, e.carrier, d.InviteRequest.CallID().Value(), fromTag(d.InviteRequest))
		})
	}
}

func TestCallLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		tweak func(*Options)
	}{
		{name: "no RTP for media.timeout", tweak: func(o *Options) { o.MediaTimeout = 1500 * time.Millisecond }},
		{name: "calls.max_duration", tweak: func(o *Options) { o.MaxDuration = 1500 * time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, "answer", tc.tweak)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			d, _ := e.dialAndKey(ctx, testHost, testExt)
			ds := nextSession(t, e.carrier)
			// Both legs get a BYE from vnum.
			require.Eventually(t, func() bool {
				return d.LoadState() == sip.DialogStateEnded && ds.LoadState() == sip.DialogStateEnded
			}, 10*time.Second, 20*time.Millisecond)
			cdr := e.router.waitEnded(t)
			require.Equal(t, "answered", string(cdr.Disposition))
			require.Equal(t, "system", string(cdr.HangupBy))
			e.waitNoCalls()
		})
	}
}

func TestUpdateAndReInviteKeepTheCall(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	nextSession(t, e.carrier)
	target := d.InviteResponse.Contact().Address

	upd := sip.NewRequest(sip.UPDATE, target)
	res, err := d.Do(ctx, upd)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode, "session refresh")

	first := string(d.InviteResponse.Body())
	reinvite := func(direction string) string {
		t.Helper()
		req := sip.NewRequest(sip.INVITE, target)
		req.SetBody([]byte(strings.Replace(string(e.phone.SDP()), "a=sendrecv", "a="+direction, 1)))
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res, err := d.Do(ctx, req)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode, "re-INVITE")
		_, err = sipua.MediaAddr(res.Body())
		require.NoError(t, err, "the re-INVITE's answer carries SDP")
		require.NotContains(t, string(res.Body()), testNational)
		return string(res.Body())
	}
	held := reinvite("sendonly")
	// No ACK yet: vnum retransmits its 200 (RFC 3261 §13.3.1.4); after the
	// ACK it stops.
	answers := func() int {
		n := 0
		for _, m := range e.phone.Received() {
			if strings.HasPrefix(m, "SIP/2.0 200") && strings.Contains(m, "INVITE") && strings.Contains(m, "a=recvonly") {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return answers() >= 2 }, 3*time.Second, 20*time.Millisecond, "the 200 is retransmitted until ACK")
	require.NoError(t, d.WriteRequest(sip.NewRequest(sip.ACK, target)))
	time.Sleep(100 * time.Millisecond)
	acked := answers()
	time.Sleep(1200 * time.Millisecond)
	require.Equal(t, acked, answers(), "no retransmission after the ACK")
	require.Contains(t, held, "a=recvonly", "hold is answered recvonly (RFC 3264 §6.1)")
	require.NotEqual(t, originLine(first), originLine(held), "a changed answer has a new o= version")
	resumed := reinvite("sendrecv")
	require.Contains(t, resumed, "a=sendrecv")
	require.Equal(t, originLine(resumed), originLine(reinvite("sendrecv")), "an unchanged answer keeps its version")

	require.Equal(t, 1, e.srv.ActiveCalls(), "the call is still up")
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
}

func TestEarlyModeAnswersWhenBAnswers(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) { o.AnswerMode = "early" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := e.phone.Invite(ctx, e.vnum, testHost)
	require.NoError(t, err)
	got183 := false
	err = d.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "alice", Password: "s3cret",
		OnResponse: func(r *sip.Response) error {
			if r.StatusCode == 183 && !got183 {
				got183 = true
				to, err := sipua.MediaAddr(r.Body())
				if err == nil {
					go func() { _ = sipua.SendDigits(e.phone.RTP, to, 101, testExt) }()
				}
			}
			return nil
		}})
	require.NoError(t, err)
	require.True(t, got183, "digits are collected in 183 early media")
	require.NoError(t, d.Ack(ctx))
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
}

func TestDrainOnShutdown(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) { o.DrainTimeout = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	ds := nextSession(t, e.carrier)

	stopped, _ := e.drainAndCallAgain(ctx)
	<-stopped
	require.Equal(t, sip.DialogStateEnded, d.LoadState(), "the call in progress was hung up after the drain timeout")
	// The carrier's dialog ends just after it answers vnum's BYE.
	require.Eventually(t, func() bool { return ds.LoadState() == sip.DialogStateEnded }, 2*time.Second, 10*time.Millisecond)
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "system", string(cdr.HangupBy))
}

func TestCallerOverTCP(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	e.phone.Transport = "tcp"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tcp := netip.MustParseAddrPort(e.srv.Addr("tcp"))
	d, err := e.phone.Call(ctx, tcp, testHost)
	require.NoError(t, err)
	to, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	require.NoError(t, sipua.SendDigits(e.phone.RTP, to, 101, testExt))
	require.Equal(t, testNational, nextInvite(t, e.carrier).Recipient.User)
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "caller", string(cdr.HangupBy))
}

func TestWhileBRings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		co   sipua.CarrierOptions
		ssrc uint32 // the RTP the caller must hear while B rings; 0: vnum's ringback
	}{
		{name: "ringback tone", co: sipua.CarrierOptions{Mode: "answer", RingFor: 2 * time.Second}},
		{name: "early media relayed", co: sipua.CarrierOptions{Mode: "answer", RingFor: 2 * time.Second, EarlyMedia: true}, ssrc: sipua.EarlyMediaSSRC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnvWith(t, tc.co, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			d, _ := e.dialAndKey(ctx, testHost, testExt)
			nextInvite(t, e.carrier)
			ssrc := tc.ssrc
			if ssrc == 0 {
				ssrc = firstSSRC(t, e.phone)
			}
			require.Greater(t, sipua.CountRTP(e.phone.RTP, time.Second, ssrc), 20, "the caller hears something while B rings")
			nextSession(t, e.carrier)
			require.NoError(t, d.Bye(ctx))
			cdr := e.router.waitEnded(t)
			require.Equal(t, "answered", string(cdr.Disposition))
			require.False(t, cdr.RingingAt.IsZero())
			require.True(t, cdr.AnsweredAt.Sub(cdr.RingingAt) >= time.Second, "talk time starts at B's answer, not while it rings")
		})
	}
}

// firstSSRC reads RTP from vnum until a packet arrives and returns its SSRC
// (vnum's own stream towards the caller: prompt, then ringback).
func firstSSRC(t *testing.T, p *sipua.Softphone) uint32 {
	t.Helper()
	buf := make([]byte, 1500)
	require.NoError(t, p.RTP.SetReadDeadline(time.Now().Add(3*time.Second)))
	defer func() { _ = p.RTP.SetReadDeadline(time.Time{}) }()
	n, _, err := p.RTP.ReadFromUDP(buf)
	require.NoError(t, err)
	var pkt rtp.Packet
	require.NoError(t, pkt.Unmarshal(buf[:n]))
	return pkt.SSRC
}

func originLine(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if strings.HasPrefix(l, "o=") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// TestPublicHost: behind NAT, sip.public_host goes into Contact, From and
// the SDP both legs receive, while the relay binds media.ip. The "public"
// address is another loopback address, where vnum listens.
func TestPublicHost(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) {
		o.Listen = []string{"udp://127.0.0.2:0"}
		o.PublicHost = "127.0.0.2"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := e.phone.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.2", d.InviteResponse.Contact().Address.Host)
	require.Contains(t, string(d.InviteResponse.Body()), "c=IN IP4 127.0.0.2")
	inv := nextInvite(t, e.carrier)
	require.Contains(t, string(inv.Body()), "c=IN IP4 127.0.0.2")
	require.Equal(t, "127.0.0.2", inv.From().Address.Host)
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
}
