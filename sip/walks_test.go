package sip

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// testClock is a clock tests move by hand.
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

// refusedWith places a call and returns the final status it got. An
// answered call is hung up once bridged, or left for vnum to end (a wrong
// extension).
func refusedWith(t *testing.T, p *sipua.Softphone, e *testEnv, dialled string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := p.Call(ctx, e.vnum, dialled)
	if err == nil {
		cdr := e.router.waitEnded(t)
		if cdr.Disposition != "invalid_extension" {
			t.Fatalf("call ended %s", cdr.Disposition)
		}
		require.Eventually(t, func() bool { return d.Context().Err() != nil }, 5*time.Second, 10*time.Millisecond)
		return 200
	}
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(t, err, &dr)
	if dr.Res.StatusCode == 403 {
		// Refused for walking extensions: the attempt leaves its record
		// all the same, billed nothing.
		cdr := e.router.waitEnded(t)
		require.Equal(t, "invalid_extension", string(cdr.Disposition))
		require.Equal(t, 403, cdr.SIPStatus)
		require.Equal(t, "system", string(cdr.HangupBy))
		require.Equal(t, testHost, cdr.Host)
		require.NotEmpty(t, cdr.Caller)
		require.True(t, cdr.AnsweredAt.IsZero())
		require.False(t, cdr.EndedAt.IsZero())
	}
	return dr.Res.StatusCode
}

// bridges places a call to the right extension, which reaches the carrier.
func bridges(t *testing.T, p *sipua.Softphone, e *testEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := p.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err, "%s is not refused", p.User)
	nextInvite(t, e.carrier)
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
}

// TestExtensionWalkingAccount: a merchant's softphone that keys
// security.invalid_extensions wrong extensions within an hour has its call
// ended at once and its next calls refused with 403 before anything is
// answered; other accounts are not touched, and an hour later it may call
// again.
func TestExtensionWalkingAccount(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	e := newTestEnv(t, "answer", func(o *Options) {
		o.InvalidExtensions = 3
		o.Attempts = 5
		o.Now = clock.Now
	})
	e.router.addAccount("m1", "bob", "b0b-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// One wrong extension dialled directly (404), two keyed in the IVR,
	// and then the right one: the call ends at the third wrong one, so the
	// right one (already sent) is never looked at.
	require.Equal(t, 404, refusedWith(t, e.phone, e, testHost+"-9999"))
	require.Equal(t, "invalid_extension", string(e.router.waitEnded(t).Disposition))
	d, err := e.phone.Call(ctx, e.vnum, testHost)
	require.NoError(t, err)
	to, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	require.NoError(t, sipua.SendDigits(e.phone.RTP, to, 101, "88887777"+testExt))
	require.Eventually(t, func() bool { return d.Context().Err() != nil }, 15*time.Second, 10*time.Millisecond, "vnum hangs up")
	cdr := e.router.waitEnded(t)
	require.Equal(t, "invalid_extension", string(cdr.Disposition))
	require.Zero(t, e.carrier.Pending(), "the right extension keyed after the limit reaches nobody")

	calls := e.srv.CallsTotal()
	require.Equal(t, 403, refusedWith(t, e.phone, e, testHost+"-"+testExt), "even the right extension is refused now")
	require.Equal(t, calls, e.srv.CallsTotal(), "refused before a call was set up")

	bob, err := sipua.NewSoftphone("bob", "b0b-secret", nil)
	require.NoError(t, err)
	t.Cleanup(bob.Close)
	bridges(t, bob, e)

	clock.Advance(59 * time.Minute)
	require.Equal(t, 403, refusedWith(t, e.phone, e, testHost+"-"+testExt), "the window is an hour")
	clock.Advance(time.Minute)
	bridges(t, e.phone, e)
	e.waitNoCalls()
}

// TestExtensionWalkingTrunkCaller: a PSTN caller is counted by its calling
// number over many calls, whatever form the number takes.
func TestExtensionWalkingTrunkCaller(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	e := newTestEnv(t, "answer", func(o *Options) {
		trunkFromLoopback(o)
		o.InvalidExtensions = 2
		o.Attempts = 1
		o.Now = clock.Now
	})
	walker, err := sipua.NewSoftphone("13700137000", "", nil)
	require.NoError(t, err)
	t.Cleanup(walker.Close)
	for _, ext := range []string{"9999", "8888"} {
		// A wrong direct dial: its prompt as early media, then 404.
		require.Equal(t, 404, refusedWith(t, walker, e, testHost+"-"+ext))
		require.Equal(t, "invalid_extension", string(e.router.waitEnded(t).Disposition))
	}
	require.Equal(t, 403, refusedWith(t, walker, e, testHost+"-"+testExt))
	same, err := sipua.NewSoftphone("+8613700137000", "", nil)
	require.NoError(t, err)
	t.Cleanup(same.Close)
	require.Equal(t, 403, refusedWith(t, same, e, testHost+"-"+testExt), "the same number in E.164 form")

	other, err := sipua.NewSoftphone("13600136000", "", nil)
	require.NoError(t, err)
	t.Cleanup(other.Close)
	bridges(t, other, e)
	e.waitNoCalls()
}

// TestWalkLimitForgets: callers whose wrong extensions are an hour old are
// swept, so the limit's memory is bounded by the last hour's callers.
func TestWalkLimitForgets(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	w := newWalkLimit(3, clock.Now)
	for i := range 1000 {
		w.wrongExtension(walkKey(Account{User: "u" + string(rune('a'+i%26)) + string(rune('a'+i/26))}, false, ""))
	}
	require.Equal(t, 1000, w.callers())
	for i := range 5 {
		require.Equal(t, i >= 2, w.wrongExtension("number:+8613700137000"), "wrong extension %d", i+1)
	}
	require.True(t, w.blocked("number:+8613700137000"))
	require.Equal(t, 3, len(w.wrong["number:+8613700137000"]), "at most limit times per caller")
	clock.Advance(time.Hour)
	require.False(t, w.blocked("number:+8613700137000"))
	require.Zero(t, w.callers(), "everyone swept")
	off := newWalkLimit(0, nil)
	for range 10 {
		require.False(t, off.wrongExtension("x"), "0 limits nothing")
	}
	require.False(t, off.blocked("x"), "0 limits nothing")
	require.Zero(t, off.callers(), "0 remembers nothing")
}
