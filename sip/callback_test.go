package sip

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/sip/sipua"
)

// The consignee's phone, calling from the number bound to it over the trunk.
func newConsigneePhone(t *testing.T) *sipua.Softphone {
	t.Helper()
	p, err := sipua.NewSoftphone(testNational, "", nil)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

func trunkFromLoopback(o *Options) {
	o.InboundCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

func TestCallbackToLastPSTNCaller(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", trunkFromLoopback)
	const courier = "13700137000"
	e.router.addCallback(testHost, testNational, Callback{
		Target: Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee},
		Number: courier,
	})
	b := newConsigneePhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := b.Call(ctx, e.vnum, testHost)
	require.NoError(t, err)

	inv := nextInvite(t, e.carrier)
	require.Equal(t, courier, inv.Recipient.User, "the courier who last called is rung")
	require.Equal(t, testHost, inv.From().Address.User, "the courier sees X")
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "callback", string(cdr.Direction))
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "b1", cdr.BindingID)
	require.NotContains(t, cdr.Caller, "13800138000", "the consignee's number stays out of the CDR")
	require.Equal(t, callrec.CallerConsignee, cdr.CallerKind, "a call back is never dialled back")

	for _, m := range e.carrier.Received() {
		require.NotContains(t, m, testNational, "the courier never sees B")
	}
	for _, m := range b.Received() {
		require.NotContains(t, m, courier, "the consignee never sees the courier")
	}
	e.waitNoCalls()
	requireSeries(t, e.scrape(), callbackKPIs(routeTrunk))
}

func TestCallbackToMerchantAccounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cb   Callback
	}{
		{name: "the account that last called", cb: Callback{Account: "alice"}},
		{name: "no one called yet: the merchant's registered accounts ring", cb: Callback{Accounts: []string{"alice", "bob"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, "answer", trunkFromLoopback)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, e.phone.Register(ctx, e.vnum))
			require.True(t, e.srv.Registered("alice"))
			cb := tc.cb
			cb.Target = Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee}
			e.router.addCallback(testHost, testNational, cb)

			b := newConsigneePhone(t)
			d, err := b.Call(ctx, e.vnum, testHost)
			require.NoError(t, err)
			in, err := e.phone.NextIncoming(10 * time.Second)
			require.NoError(t, err)
			require.Equal(t, testHost, in.Invite.From().Address.User, "the merchant sees X")
			require.NoError(t, in.Session.Bye(ctx))
			require.Eventually(t, func() bool { return d.Context().Err() != nil }, 5*time.Second, 10*time.Millisecond)
			cdr := e.router.waitEnded(t)
			require.Equal(t, "callback", string(cdr.Direction))
			require.Equal(t, "answered", string(cdr.Disposition))
			require.Equal(t, "callee", string(cdr.HangupBy))
			for _, m := range e.phone.Received() {
				require.False(t, strings.Contains(m, testNational) || strings.Contains(m, "8613800138000"), "the merchant never sees B:\n%s", m)
			}
			e.waitNoCalls()
			requireSeries(t, e.scrape(), callbackKPIs(routeSoftphone))
		})
	}
}

func TestRegisterNeedsCredentials(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", trunkFromLoopback)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad, err := sipua.NewSoftphone("alice", "wrong-password", nil)
	require.NoError(t, err)
	t.Cleanup(bad.Close)
	require.Error(t, bad.Register(ctx, e.vnum), "a trunk source address is no registration credential")
	require.False(t, e.srv.Registered("alice"))
	require.NoError(t, e.phone.Register(ctx, e.vnum))
	require.True(t, e.srv.Registered("alice"))
}

func TestRegistrarIntervals(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.phone.RegisterFor(ctx, e.vnum, 600)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, "600", res.GetHeader("Expires").Value(), "a shorter interval is granted as asked")
	require.True(t, e.srv.Registered("alice"))

	res, err = e.phone.RegisterFor(ctx, e.vnum, 86400)
	require.NoError(t, err)
	require.Equal(t, "3600", res.GetHeader("Expires").Value(), "a longer one is shortened, never lengthened")

	res, err = e.phone.RegisterFor(ctx, e.vnum, 30)
	require.NoError(t, err)
	require.Equal(t, 423, res.StatusCode)
	require.Equal(t, "60", res.GetHeader("Min-Expires").Value())

	res, err = e.phone.RegisterFor(ctx, e.vnum, 0)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	require.False(t, e.srv.Registered("alice"), "expires 0 removes the registration")
}

// TestTrunkNeverBlocked: failed REGISTERs from a trunk address (anyone can
// forge one) do not block the carrier's calls.
func TestTrunkNeverBlocked(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) {
		trunkFromLoopback(o)
		o.AuthFailures = 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bad, err := sipua.NewSoftphone("alice", "wrong-password", nil)
	require.NoError(t, err)
	t.Cleanup(bad.Close)
	for i := 0; i < 4; i++ {
		res, err := bad.RegisterFor(ctx, e.vnum, 600)
		require.NoError(t, err)
		require.Equal(t, 403, res.StatusCode)
	}
	courier := newConsigneePhone(t)
	d, err := courier.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err, "the trunk still gets through")
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
}
