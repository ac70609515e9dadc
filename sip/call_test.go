package sip

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/sip/sipua"
)

// dialAndKey places a call to X, keys E as RFC 4733 RTP and returns the
// answered dialog and vnum's media address.
func (e *testEnv) dialAndKey(ctx context.Context, user, digits string) (*sipgo.DialogClientSession, func()) {
	e.t.Helper()
	d, err := e.phone.Call(ctx, e.vnum, user)
	require.NoError(e.t, err)
	to, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(e.t, err)
	if digits != "" {
		require.NoError(e.t, sipua.SendDigits(e.phone.RTP, to, 101, digits))
	}
	talk := func() { _ = sipua.SendAudio(ctx, e.phone.RTP, to, 0xA11CE, 50) }
	return d, talk
}

func TestCallEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		hangupByB  bool
		wantHangup string
	}{
		{name: "caller hangs up", wantHangup: "caller"},
		{name: "callee hangs up", hangupByB: true, wantHangup: "callee"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, "answer", nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d, talk := e.dialAndKey(ctx, testHost, testExt)

			inv := nextInvite(t, e.carrier)
			require.Equal(t, testNational, inv.Recipient.User, "leg B Request-URI must be B")
			require.Equal(t, testHost, inv.From().Address.User, "leg B From must be X")
			require.Contains(t, inv.GetHeader("P-Asserted-Identity").Value(), testHost)
			ds := nextSession(t, e.carrier)

			// Media flows both ways through vnum's relay.
			bMedia, err := sipua.MediaAddr(inv.Body())
			require.NoError(t, err)
			go talk()
			require.Greater(t, sipua.CountRTP(e.carrier.RTP, 1500*time.Millisecond, 0xA11CE), 10, "carrier hears the caller")
			go func() { _ = sipua.SendAudio(ctx, e.carrier.RTP, bMedia, 0xB0B, 50) }()
			require.Greater(t, sipua.CountRTP(e.phone.RTP, 1500*time.Millisecond, 0xB0B), 10, "caller hears the carrier")

			if tc.hangupByB {
				require.NoError(t, ds.Bye(ctx))
				require.Eventually(t, func() bool { return d.LoadState() == sip.DialogStateEnded }, 5*time.Second, 10*time.Millisecond)
			} else {
				require.NoError(t, d.Bye(ctx))
				require.Eventually(t, func() bool { return ds.LoadState() == sip.DialogStateEnded }, 5*time.Second, 10*time.Millisecond)
			}
			cdr := e.router.waitEnded(t)
			require.Equal(t, "answered", string(cdr.Disposition))
			require.Equal(t, tc.wantHangup, string(cdr.HangupBy))
			require.Equal(t, "b1", cdr.BindingID)
			require.Equal(t, "m1", cdr.Merchant)
			require.Equal(t, "alice", cdr.Caller)
			require.Equal(t, callrec.CallerAccount, cdr.CallerKind, "a call back may ring the account")
			require.Equal(t, testExt, cdr.Extension)
			require.Equal(t, 200, cdr.SIPStatus)
			require.False(t, cdr.AnsweredAt.IsZero())
			require.False(t, cdr.RingingAt.IsZero())
			require.True(t, !cdr.EndedAt.Before(cdr.AnsweredAt))

			assertPrivate(t, e.phone, e.carrier, d.InviteRequest.CallID().Value(), fromTag(d.InviteRequest))
			e.waitNoCalls()
			e.assertLogsPrivate()
		})
	}
}

func nextInvite(t testing.TB, c *sipua.Carrier) *sip.Request {
	t.Helper()
	r, err := c.NextInvite(15 * time.Second)
	require.NoError(t, err)
	return r
}

func nextSession(t testing.TB, c *sipua.Carrier) *sipgo.DialogServerSession {
	t.Helper()
	s, err := c.NextSession(15 * time.Second)
	require.NoError(t, err)
	return s
}

func fromTag(r *sip.Request) string {
	tag, _ := r.From().Params.Get("tag")
	return tag
}

func TestCallFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		carrier     string
		digits      string
		tweak       func(*Options)
		disposition string
		hangupBy    string
		status      int
		reachB      bool
		kpis        map[string]float64 // the KPIs after the call (kpi_test.go)
	}{
		{name: "busy", carrier: "busy", digits: testExt, disposition: "busy", hangupBy: "callee", status: 486, reachB: true,
			kpis: unansweredKPIs("busy")},
		{name: "rejected", carrier: "reject", digits: testExt, disposition: "rejected", hangupBy: "callee", status: 603, reachB: true,
			kpis: unansweredKPIs("rejected")},
		{name: "no answer", carrier: "ring", digits: testExt, tweak: func(o *Options) { o.RingTimeout = time.Second },
			disposition: "no_answer", hangupBy: "system", status: 408, reachB: true, kpis: unansweredKPIs("no_answer")},
		{name: "wrong extension three times", carrier: "answer", digits: "9999", disposition: "invalid_extension", hangupBy: "system",
			kpis: ivrKPIs("invalid")},
		{name: "no digits", carrier: "answer", tweak: func(o *Options) { o.FirstDigitTimeout = 200 * time.Millisecond },
			disposition: "invalid_extension", hangupBy: "system", kpis: ivrKPIs("timeout")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, tc.carrier, tc.tweak)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			d, err := e.phone.Call(ctx, e.vnum, testHost)
			require.NoError(t, err)
			to, err := sipua.MediaAddr(d.InviteResponse.Body())
			require.NoError(t, err)
			if tc.digits != "" {
				require.NoError(t, sipua.SendDigits(e.phone.RTP, to, 101, tc.digits))
				if tc.disposition == "invalid_extension" {
					for i := 1; i <= 2; i++ {
						e.waitLogged("invalid extension", i) // the next attempt begins
						require.NoError(t, sipua.SendDigits(e.phone.RTP, to, 101, tc.digits))
					}
				}
			}
			// vnum tells the caller and hangs up.
			require.Eventually(t, func() bool { return d.LoadState() == sip.DialogStateEnded }, 30*time.Second, 20*time.Millisecond)
			cdr := e.router.waitEnded(t)
			require.Equal(t, tc.disposition, string(cdr.Disposition))
			require.Equal(t, tc.hangupBy, string(cdr.HangupBy))
			if tc.digits != "" && tc.disposition == "invalid_extension" {
				require.NotContains(t, e.logs.String(), `msg="no extension keyed"`, "every attempt was a wrong extension, none timed out")
			}
			if tc.status != 0 {
				require.Equal(t, tc.status, cdr.SIPStatus)
			}
			require.True(t, cdr.AnsweredAt.IsZero())
			if !tc.reachB {
				require.Zero(t, e.carrier.Pending(), "no INVITE may reach the trunk")
			}
			assertPrivate(t, e.phone, e.carrier, d.InviteRequest.CallID().Value(), fromTag(d.InviteRequest))
			e.waitNoCalls()
			e.assertLogsPrivate()
			requireSeries(t, e.scrape(), tc.kpis)
		})
	}
}

// TestCancel: the caller CANCELs its INVITE (vnum answers in early media,
// so the INVITE is still pending) while the IVR plays its prompt, or while
// B rings; each case waits for the sign of its phase, not for a time.
func TestCancel(t *testing.T) {
	t.Parallel()
	early := func(o *Options) { o.AnswerMode = "early"; o.FirstDigitTimeout = 5 * time.Second }
	for _, tc := range []struct {
		name    string
		carrier string
		digits  string
		state   CallState
	}{
		{name: "during IVR", carrier: "answer", state: StateIVR},
		{name: "during ringing", carrier: "ring", digits: testExt, state: StateRinging},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, tc.carrier, early)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d, err := e.phone.Invite(ctx, e.vnum, testHost)
			require.NoError(t, err)
			got183 := make(chan struct{})
			waitCtx, stop := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() {
				once := false
				errc <- d.WaitAnswer(waitCtx, sipgo.AnswerOptions{Username: "alice", Password: "s3cret",
					OnResponse: func(r *sip.Response) error {
						if r.StatusCode == 183 && !once {
							once = true
							to, err := sipua.MediaAddr(r.Body())
							if err == nil && tc.digits != "" {
								go func() { _ = sipua.SendDigits(e.phone.RTP, to, 101, tc.digits) }()
							}
							close(got183)
						}
						return nil
					}})
			}()
			select {
			case <-got183:
			case <-time.After(10 * time.Second):
				t.Fatal("no 183")
			}
			if tc.state == StateRinging {
				nextInvite(t, e.carrier)
				_, err := e.carrier.NextRinging(10 * time.Second)
				require.NoError(t, err, "B rings")
			} else {
				firstSSRC(t, e.phone) // the prompt plays
			}
			e.waitState(tc.state)
			stop() // WaitAnswer sends CANCEL
			<-errc
			cdr := e.router.waitEnded(t)
			require.Equal(t, "cancelled", string(cdr.Disposition))
			require.Equal(t, "caller", string(cdr.HangupBy))
			require.True(t, cdr.AnsweredAt.IsZero())
			if tc.state == StateRinging {
				require.Equal(t, "b1", cdr.BindingID)
				require.Eventually(t, func() bool { return receivedMethod(e.carrier.Peer, sip.CANCEL) }, 5*time.Second, 10*time.Millisecond,
					"vnum CANCELs the ringing leg B (RFC 3261 §9.1)")
			} else {
				require.Empty(t, cdr.BindingID, "cancelled before an extension was keyed")
				require.Zero(t, e.carrier.Pending(), "no INVITE reached the trunk")
				require.Empty(t, e.carrier.Received())
			}
			e.waitNoCalls()
		})
	}
}

// receivedMethod reports whether p has received a request of method.
func receivedMethod(p *sipua.Peer, method sip.RequestMethod) bool {
	for _, m := range p.Received() {
		if strings.HasPrefix(m, string(method)+" ") {
			return true
		}
	}
	return false
}

func TestDirectExtensionAndInfo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		user   string
		digits string
		info   bool
	}{
		{name: "X;ext=E", user: testHost + ";ext=" + testExt},
		{name: "X-E", user: testHost + "-" + testExt},
		{name: "X,E with +86", user: "+86" + testHost + "," + testExt},
		{name: "SIP INFO digits", user: testHost, info: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, "answer", nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d, err := e.phone.Call(ctx, e.vnum, tc.user)
			require.NoError(t, err)
			if tc.info {
				for _, r := range testExt {
					req := sip.NewRequest(sip.INFO, d.InviteResponse.Contact().Address)
					req.SetBody([]byte("Signal=" + string(r) + "\r\nDuration=160\r\n"))
					req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
					res, err := d.Do(ctx, req)
					require.NoError(t, err)
					require.Equal(t, 200, res.StatusCode)
				}
			}
			inv := nextInvite(t, e.carrier)
			require.Equal(t, testNational, inv.Recipient.User)
			nextSession(t, e.carrier)
			require.NoError(t, d.Bye(ctx))
			cdr := e.router.waitEnded(t)
			require.Equal(t, "answered", string(cdr.Disposition))
			e.waitNoCalls()
			if tc.info {
				requireSeries(t, e.scrape(), infoKPIs)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) { o.AuthFailures = 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// No credentials: a 407 challenge naming MD5.
	chal := e.challenge(ctx).GetHeader("Proxy-Authenticate").Value()
	require.Contains(t, chal, "algorithm=MD5")
	require.Contains(t, chal, `realm="vnum"`)

	// Wrong password: 403, and after three failures the source is blocked,
	// even for the right password.
	bad, err := sipua.NewSoftphone("alice", "wrong", nil)
	require.NoError(t, err)
	t.Cleanup(bad.Close)
	var dr *sipgo.ErrDialogResponse
	for i := 0; i < 3; i++ {
		_, err := bad.Call(ctx, e.vnum, testHost)
		require.ErrorAs(t, err, &dr)
		require.Equal(t, 403, dr.Res.StatusCode)
	}
	_, err = e.phone.Call(ctx, e.vnum, testHost)
	require.ErrorAs(t, err, &dr)
	require.Equal(t, 403, dr.Res.StatusCode, "127.0.0.1 is blocked now")
	require.Zero(t, e.carrier.Pending())
}

func TestSHA256Challenge(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) { o.DigestAlgorithms = []string{"SHA-256", "MD5"} })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hs := e.challenge(ctx).GetHeaders("Proxy-Authenticate")
	require.Len(t, hs, 2)
	require.Contains(t, hs[0].Value(), "algorithm=SHA-256")
	require.Contains(t, hs[1].Value(), "algorithm=MD5")
	// sipgo answers the first challenge it finds (SHA-256).
	d2, _ := e.dialAndKey(ctx, testHost, testExt)
	nextSession(t, e.carrier)
	require.NoError(t, d2.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
}

// challenge sends an INVITE without credentials and returns vnum's answer,
// which must be the 407 challenge (RFC 3261 §22.3).
func (e *testEnv) challenge(ctx context.Context) *sip.Response {
	e.t.Helper()
	d, err := e.phone.Invite(ctx, e.vnum, testHost)
	require.NoError(e.t, err)
	err = d.WaitAnswer(ctx, sipgo.AnswerOptions{})
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(e.t, err, &dr)
	require.Equal(e.t, 407, dr.Res.StatusCode)
	return dr.Res
}

func TestOptionsAndMessage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) {
		o.InboundCIDRs = nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	uri := sip.Uri{Scheme: "sip", User: testHost, Host: "127.0.0.1", Port: int(e.vnum.Port())}
	opt := sip.NewRequest(sip.OPTIONS, uri)
	res, err := e.phone.Client.Do(ctx, opt)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	require.Contains(t, res.GetHeader("Allow").Value(), "INVITE")

	msg := sip.NewRequest(sip.MESSAGE, uri)
	msg.SetBody([]byte("hello"))
	msg.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	res, err = e.phone.Client.Do(ctx, msg)
	require.NoError(t, err)
	require.Equal(t, 407, res.StatusCode, "MESSAGE from an unknown source is challenged")
	res, err = e.phone.Client.DoDigestAuth(ctx, msg, res, sipgo.DigestAuth{Username: "alice", Password: "s3cret"})
	require.NoError(t, err)
	require.Equal(t, 405, res.StatusCode)
	require.Contains(t, res.GetHeader("Allow").Value(), "INVITE")
	require.Contains(t, strings.ToLower(res.GetHeader("Warning").Value()), "no sms")
	require.EqualValues(t, 1, e.srv.MessagesRefused())
}

func TestNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("calls", func(t *testing.T) {
		e := newTestEnv(t, "answer", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := 0; i < 3; i++ {
			d, _ := e.dialAndKey(ctx, testHost, testExt)
			nextSession(t, e.carrier)
			require.NoError(t, d.Bye(ctx))
			e.router.waitEnded(t)
		}
		e.waitNoCalls()
	})
	// Every goroutine of the calls, the relay and the UAs is gone.
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 10*time.Second, 50*time.Millisecond,
		"goroutines: before %d, now %d", before, runtime.NumGoroutine())
}

// TestCallIDsInOrder: a call's id (its record's, and leg B's Call-ID) is
// a version 7 UUID, so that ids made one after another sort in the order
// made: the store's index of record ids grows at its end.
func TestCallIDsInOrder(t *testing.T) {
	t.Parallel()
	prev := ""
	for range 1000 {
		id := newCallID()
		u, err := uuid.Parse(id)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(7), u.Version())
		require.Greater(t, id, prev)
		prev = id
	}
}
