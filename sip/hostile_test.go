package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
	"github.com/vnum/vnum/sip/sipua"
)

// TestCallbackDialsOnlyPhoneNumbers: a PSTN caller's From user becomes the
// binding's last caller, which a call back from the consignee dials. Only a
// validated phone number may get there: junk in From is not remembered, and
// whatever the store holds is checked again before it is dialled.
func TestCallbackDialsOnlyPhoneNumbers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, from string
		wantRURI   string // what the carrier's phone is rung at on the call back; "" for nobody
	}{
		{name: "valid mobile", from: "13700137000", wantRURI: "13700137000"},
		{name: "valid E.164", from: "+8613700137000", wantRURI: "13700137000"},
		{name: "uri parameters and headers", from: "13900000002;x=1?X-Injected=evil"},
		{name: "escaped CRLF", from: "13900000002%0d%0aX-Injected:evil"},
		{name: "not a number", from: "alice"},
		{name: "too short", from: "12345"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, "answer", trunkFromLoopback)
			e.router.mu.Lock() // the server's goroutines read it
			e.router.remember = true
			e.router.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			courier, err := sipua.NewSoftphone(tc.from, "", nil)
			require.NoError(t, err)
			t.Cleanup(courier.Close)
			d, err := courier.Call(ctx, e.vnum, testHost+"-"+testExt)
			require.NoError(t, err)
			require.Equal(t, testNational, nextInvite(t, e.carrier).Recipient.User)
			nextSession(t, e.carrier)
			require.NoError(t, d.Bye(ctx))
			first := e.router.waitEnded(t)
			require.Equal(t, "answered", string(first.Disposition))
			if tc.wantRURI == "" {
				require.Empty(t, first.Caller, "an invalid number is not remembered")
			} else {
				require.Equal(t, "+86"+tc.wantRURI, first.Caller, "the caller is recorded normalised")
			}

			// The consignee calls X back.
			b := newConsigneePhone(t)
			d, err = b.Call(ctx, e.vnum, testHost)
			if tc.wantRURI == "" {
				// Nobody to ring: the "unavailable" prompt as early
				// media, then 480; never an answer.
				requireRefusedUnanswered(t, err, 480, b.Received())
				require.Zero(t, e.carrier.Pending(), "the carrier is not asked to dial anything")
			} else {
				require.NoError(t, err)
				inv := nextInvite(t, e.carrier)
				require.Equal(t, tc.wantRURI, inv.Recipient.User)
				require.Equal(t, tc.wantRURI, inv.To().Address.User)
				require.True(t, inv.Recipient.Headers == nil || inv.Recipient.Headers.Length() == 0, "no URI headers from outside")
				nextSession(t, e.carrier)
				require.NoError(t, d.Bye(ctx))
			}
			require.Equal(t, "callback", string(e.router.waitEnded(t).Direction))
			for _, m := range e.carrier.Received() {
				require.NotContains(t, strings.ToLower(m), "x-injected", "the carrier got the caller's junk:\n%s", m)
				if tc.wantRURI == "" {
					require.NotContains(t, m, tc.from+"@", "the carrier got the caller's From user:\n%s", m)
				}
			}
			e.waitNoCalls()
		})
	}
}

// TestCallbackRechecksStoredNumber: a last caller that is no phone number
// (a record from before callers were validated) is never dialled.
func TestCallbackRechecksStoredNumber(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", trunkFromLoopback)
	e.router.addCallback(testHost, testNational, Callback{
		Target: Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee},
		Number: "13900000002;x=1?X-Injected=evil",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := newConsigneePhone(t)
	_, err := b.Call(ctx, e.vnum, testHost)
	requireRefusedUnanswered(t, err, 480, b.Received())
	require.Equal(t, "no_answer", string(e.router.waitEnded(t).Disposition))
	require.Zero(t, e.carrier.Pending())
	require.Empty(t, e.carrier.Received(), "nothing reaches the carrier")
	e.waitNoCalls()
}

// TestRetryAfterFollowsDrainTimeout: while draining, a new call is told to
// come back after calls.drain_timeout (whole seconds, rounded up), not a
// fixed 30 s.
func TestRetryAfterFollowsDrainTimeout(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) { o.DrainTimeout = 1500 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e.dialAndKey(ctx, testHost, testExt)
	nextSession(t, e.carrier)

	stopped, res := e.drainAndCallAgain(ctx)
	require.Equal(t, "2", res.GetHeader("Retry-After").Value(), "1.5 s rounds up to 2")
	<-stopped
}

// TestDrainRetryAfterRounding: the Retry-After while draining is
// calls.drain_timeout in whole seconds, rounded up (the front door's
// TestDrainRetryAfterRounding), and 30 for a drain timeout left at zero,
// config's default.
func TestDrainRetryAfterRounding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		drain time.Duration
		want  string
	}{
		{0, "30"}, {time.Millisecond, "1"}, {time.Second, "1"}, {1001 * time.Millisecond, "2"}, {45 * time.Second, "45"},
	} {
		d := frontdoor.New(Options{DrainTimeout: tc.drain}.withDefaults().door(nil, nil))
		d.Drain()
		require.Equal(t, tc.want, d.RetryAfter(503, false)[0].Value(), "drain timeout %s", tc.drain)
	}
}

// TestCallbackRebuildsRegisteredContact: a softphone's registered Contact
// is its own text; on a call back it becomes leg B's Request-URI only as
// scheme, user, host, port and transport, with no other parameter and no
// URI header (RFC 3261 §19.1.5 allows none in a Request-URI).
func TestCallbackRebuildsRegisteredContact(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", trunkFromLoopback)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	junk := e.phone.Contact.Address
	junk.User = "alice;x=1"
	junk.UriParams = sip.NewParams()
	junk.UriParams.Add("transport", "udp")
	junk.UriParams.Add("foo", "bar")
	junk.Headers = sip.NewParams()
	junk.Headers.Add("X-Injected", "evil")
	e.phone.Contact = sip.ContactHeader{Address: junk}
	require.NoError(t, e.phone.Register(ctx, e.vnum))
	e.router.addCallback(testHost, testNational, Callback{
		Target:  Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee},
		Account: "alice",
	})

	d, err := newConsigneePhone(t).Call(ctx, e.vnum, testHost)
	require.NoError(t, err)
	in, err := e.phone.NextIncoming(10 * time.Second)
	require.NoError(t, err)
	ruri := in.Invite.Recipient
	require.Equal(t, "alice", ruri.User, "a user part that is no plain token is replaced by the account")
	require.Equal(t, junk.Port, ruri.Port)
	tr, _ := ruri.UriParams.Get("transport")
	require.Equal(t, "udp", tr)
	require.False(t, ruri.UriParams.Has("foo"), "no parameter of the phone's own")
	require.True(t, ruri.Headers == nil || ruri.Headers.Length() == 0, "no URI header")
	require.NotContains(t, strings.ToLower(in.Invite.String()), "x-injected")
	require.NoError(t, d.Bye(ctx))
	e.router.waitEnded(t)
	e.waitNoCalls()
}

func TestWarningText(t *testing.T) {
	t.Parallel()
	require.Equal(t, `bad 'x'  a b`, warningText("bad \"x\"\r\na\x00b"))
	long := warningText(strings.Repeat("9", 5000))
	require.LessOrEqual(t, len(long), maxWarningText+len("…"))
	require.Equal(t, "?", warningText("\xff"))
}

// TestNoPortGetsRetryAfter: a call refused because no RTP port is free is
// told to come back soon (README "SIP behaviour in short": 503 with Retry-After).
func TestNoPortGetsRetryAfter(t *testing.T) {
	t.Parallel()
	// A range of the one pair the kernel just gave out, so no fixed port is
	// taken from whatever else runs on the host.
	pair, err := media.NewPorts("127.0.0.1", 0, 0)
	require.NoError(t, err)
	s, err := pair.Open()
	require.NoError(t, err)
	require.NoError(t, s.Close())
	ports, err := media.NewPorts("127.0.0.1", s.Port, s.Port+1)
	require.NoError(t, err)
	e := newTestEnv(t, "answer", func(o *Options) { o.Ports = ports })
	for { // every pair taken
		held, err := ports.Open()
		if err != nil {
			break
		}
		t.Cleanup(func() { _ = held.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = e.phone.Call(ctx, e.vnum, testHost)
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(t, err, &dr)
	require.Equal(t, 503, dr.Res.StatusCode)
	require.NotNil(t, dr.Res.GetHeader("Retry-After"))
	require.Equal(t, frontdoor.RetryAfterBusy, dr.Res.GetHeader("Retry-After").Value())
}
