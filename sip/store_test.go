package sip

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/frontdoor"
	"github.com/vnum/vnum/sip/sipua"
)

// stallingRouter is a store that stops answering one kind of lookup: the
// call waits until its context ends, as a database driver does, and the
// deadline it was given is recorded.
type stallingRouter struct {
	*fakeRouter
	stall     string // "account", "host" or "resolve"
	deadlines chan time.Duration
}

func (r *stallingRouter) block(ctx context.Context, what string) error {
	if what != r.stall {
		return nil
	}
	dl, ok := ctx.Deadline()
	left := time.Duration(-1)
	if ok {
		left = time.Until(dl)
	}
	select {
	case r.deadlines <- left:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func (r *stallingRouter) Account(ctx context.Context, user string) (Account, error) {
	if err := r.block(ctx, "account"); err != nil {
		return Account{}, err
	}
	return r.fakeRouter.Account(ctx, user)
}

func (r *stallingRouter) IsHostNumber(ctx context.Context, x string) (bool, error) {
	if err := r.block(ctx, "host"); err != nil {
		return false, err
	}
	return r.fakeRouter.IsHostNumber(ctx, x)
}

func (r *stallingRouter) Resolve(ctx context.Context, x, ext, merchant string) (Target, error) {
	if err := r.block(ctx, "resolve"); err != nil {
		return Target{}, err
	}
	return r.fakeRouter.Resolve(ctx, x, ext, merchant)
}

// TestStoreStallRefusesCall: a store that does not answer within
// store.timeout gets the new INVITE a 503 with Retry-After (README "SIP behaviour in short"), each
// lookup ran with a deadline no later than store.timeout, the stalled
// store was asked once (a direct dial's binding is looked up before its
// record is written, and not again), and no handler is left waiting on
// the store.
func TestStoreStallRefusesCall(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, stall := range []string{"account", "host", "resolve"} {
		t.Run(stall, func(t *testing.T) {
			var sr *stallingRouter
			e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"},
				func(o *Options) { o.StoreTimeout = timeout },
				func(r *fakeRouter) Router {
					sr = &stallingRouter{fakeRouter: r, stall: stall, deadlines: make(chan time.Duration, 8)}
					return sr
				})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// The pool is asked whether X is a host number when no binding
			// answered that already: a dial of X alone.
			dialled := testHost + "-" + testExt
			if stall == "host" {
				dialled = testHost
			}
			_, err := e.phone.Call(ctx, e.vnum, dialled)
			var dr *sipgo.ErrDialogResponse
			require.ErrorAs(t, err, &dr, "the call must be refused, not left ringing")
			require.Equal(t, 503, dr.Res.StatusCode)
			require.NotNil(t, dr.Res.GetHeader("Retry-After"), "a 503 says when to retry")
			if stall == "resolve" {
				// Admitted, then ended by the binding's lookup (its record
				// written, with the 503): not a refusal at the door.
				cdr := e.router.waitEnded(t)
				require.Equal(t, 503, cdr.SIPStatus)
			} else {
				require.EqualValues(t, 1, e.srv.RefusedCalls()[frontdoor.ReasonStoreSlow], "counted in vnum_calls_refused_total")
			}
			select {
			case left := <-sr.deadlines:
				require.Positive(t, left, "the store call had no deadline")
				require.LessOrEqual(t, left, timeout)
			default:
				t.Fatal("the stalled lookup was never made")
			}
			select {
			case <-sr.deadlines:
				t.Fatal("the stalled store was asked twice")
			default:
			}
			require.Eventually(t, func() bool { return e.srv.ActiveCalls() == 0 }, 5*time.Second, 10*time.Millisecond)
			require.Eventually(t, func() bool { return !stackHas("stallingRouter") }, 5*time.Second, 20*time.Millisecond,
				"a goroutine is still waiting on the store")
		})
	}
}

// TestStoreStallDuringIVR: a binding lookup that stalls after the caller
// keyed E ends the call (BYE to the answered caller) within store.timeout,
// with a failed CDR, instead of holding the call and its ports.
func TestStoreStallDuringIVR(t *testing.T) {
	const timeout = 300 * time.Millisecond
	var sr *stallingRouter
	e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"},
		func(o *Options) { o.StoreTimeout = timeout },
		func(r *fakeRouter) Router {
			sr = &stallingRouter{fakeRouter: r, stall: "resolve", deadlines: make(chan time.Duration, 8)}
			return sr
		})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.dialAndKey(ctx, testHost, testExt)
	cdr := e.router.waitEnded(t)
	require.Equal(t, "failed", string(cdr.Disposition))
	require.Equal(t, "system", string(cdr.HangupBy))
	left := <-sr.deadlines
	require.Positive(t, left)
	require.LessOrEqual(t, left, timeout)
	e.waitNoCalls()

	// A direct dial is not answered before B: the stalled lookup is a 503
	// with Retry-After, never an answer.
	_, err := e.phone.Call(ctx, e.vnum, testHost+"-"+testExt)
	res := requireRefusedUnanswered(t, err, 503, e.phone.Received())
	require.NotNil(t, res.GetHeader("Retry-After"))
	require.Equal(t, "failed", string(e.router.waitEnded(t).Disposition))
	left = <-sr.deadlines
	require.Positive(t, left)
	require.LessOrEqual(t, left, timeout)
	e.waitNoCalls()
	require.False(t, errors.Is(ctx.Err(), context.DeadlineExceeded))
}

// stackHas reports whether any goroutine's stack names fn.
func stackHas(fn string) bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Contains(string(buf[:n]), fn)
}

// TestStoreStallDuringEarlyIVR: in early mode the caller has no 200 yet
// when the lookup of its extension stalls: it hears 503 with Retry-After
// (a passing shortage), not 500.
func TestStoreStallDuringEarlyIVR(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"},
		func(o *Options) { o.StoreTimeout, o.AnswerMode = timeout, "early" },
		func(r *fakeRouter) Router {
			return &stallingRouter{fakeRouter: r, stall: "resolve", deadlines: make(chan time.Duration, 8)}
		})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.phone.Call(ctx, e.vnum, testHost+"-"+testExt)
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(t, err, &dr)
	require.Equal(t, 503, dr.Res.StatusCode)
	require.NotNil(t, dr.Res.GetHeader("Retry-After"))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "failed", string(cdr.Disposition))
	require.Equal(t, 503, cdr.SIPStatus)
	e.waitNoCalls()
}

// failingHostRouter answers IsHostNumber with err.
type failingHostRouter struct {
	*fakeRouter
	err error
}

func (r *failingHostRouter) IsHostNumber(context.Context, string) (bool, error) { return false, r.err }

// failingReadsRouter answers IsHostNumber and Resolve with err: a store
// that answers no read.
type failingReadsRouter struct {
	failingHostRouter
}

func (r *failingReadsRouter) Resolve(context.Context, string, string, string) (Target, error) {
	return Target{}, r.err
}

// TestDirectDialStoreDown: a direct dial while the store answers no read
// is refused at the door, 503 with Retry-After and counted as store_slow,
// with no record: its binding's lookup failed, and so did the pool's,
// which is asked whenever the binding did not answer (a number not in
// the pool leaves no record either).
func TestDirectDialStoreDown(t *testing.T) {
	t.Parallel()
	down := fmt.Errorf("%w: dial tcp 127.0.0.1:5432: connection refused", ErrStoreSlow)
	e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"}, trunkFromLoopback,
		func(r *fakeRouter) Router { return &failingReadsRouter{failingHostRouter{fakeRouter: r, err: down}} })
	courier, err := sipua.NewSoftphone(testNational, "", nil)
	require.NoError(t, err)
	t.Cleanup(courier.Close)
	res := invite(t, e, courier, testHost+"-"+testExt)
	require.Equal(t, 503, res.StatusCode, res.StartLine())
	require.NotNil(t, res.GetHeader("Retry-After"))
	require.EqualValues(t, 1, e.srv.RefusedCalls()[frontdoor.ReasonStoreSlow])
	e.router.mu.Lock()
	defer e.router.mu.Unlock()
	require.Empty(t, e.router.cdrs, "refused at the door: no record")
}

// TestStoreErrorsByKind: a store that cannot answer now (the router marks
// it ErrStoreSlow: PostgreSQL restarting, a locked SQLite file) gets a new
// call 503 with Retry-After, counted as store_slow; a broken store (a
// missing table) gets 500, counted under no overload reason: an operator's
// alert for "store slow" must not hide a broken deployment.
func TestStoreErrorsByKind(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		err     error
		code    int
		counted int64
	}{
		"unavailable": {fmt.Errorf("%w: dial tcp 127.0.0.1:5432: connection refused", ErrStoreSlow), 503, 1},
		"broken":      {errors.New(`relation "numbers" does not exist`), 500, 0},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"}, trunkFromLoopback,
				func(r *fakeRouter) Router { return &failingHostRouter{fakeRouter: r, err: tc.err} })
			courier, err := sipua.NewSoftphone(testNational, "", nil)
			require.NoError(t, err)
			t.Cleanup(courier.Close)
			// X alone: the pool is asked whether X is a host number (a
			// direct dial's binding found would answer that itself).
			res := invite(t, e, courier, testHost)
			require.Equal(t, tc.code, res.StatusCode, res.StartLine())
			if tc.code == 503 {
				require.NotNil(t, res.GetHeader("Retry-After"))
			}
			require.Equal(t, tc.counted, e.srv.RefusedCalls()[frontdoor.ReasonStoreSlow])
		})
	}
}
