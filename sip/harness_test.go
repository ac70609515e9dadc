package sip

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/sipua"
)

// fakeRouter is an in-memory Router for signalling tests.
type fakeRouter struct {
	mu        sync.Mutex
	accounts  map[string]Account
	hosts     map[string]bool
	hostAsks  int               // IsHostNumber calls
	bindings  map[string]Target // "X/E" → target
	expired   map[string]bool
	cdrs      map[string]CDR
	legs      map[string]Legs  // the dialogs UpdateCall kept, by CDR id
	writes    map[string][]CDR // every write of each record, in order
	ended     chan CDR
	refreshed chan refreshedCDR   // RefreshCall, in refresh_test.go
	callbacks map[string]Callback // "X/caller" → callback
	regs      map[string]Registration
	// remember makes Callback work as the store does: the consignee of a
	// binding calling back reaches the caller of its latest answered call.
	remember bool
	order    []string // CDR ids in the order calls started
	// slowAnswer, when set, holds the write of a call's answer time until
	// it is closed: a store slow to take the write.
	slowAnswer chan struct{}
}

func newFakeRouter() *fakeRouter {
	return &fakeRouter{
		accounts:  map[string]Account{},
		hosts:     map[string]bool{},
		bindings:  map[string]Target{},
		expired:   map[string]bool{},
		cdrs:      map[string]CDR{},
		legs:      map[string]Legs{},
		writes:    map[string][]CDR{},
		ended:     make(chan CDR, 16),
		refreshed: make(chan refreshedCDR, 64),
		callbacks: map[string]Callback{},
		regs:      map[string]Registration{},
	}
}

func (r *fakeRouter) SaveRegistration(_ context.Context, reg Registration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.regs[reg.User] = reg
	return nil
}

func (r *fakeRouter) DeleteRegistration(_ context.Context, user string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.regs, user)
	return nil
}

func (r *fakeRouter) LookupRegistration(_ context.Context, user string, now time.Time) (Registration, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, ok := r.regs[user]
	if !ok || !now.Before(reg.Expires) {
		return Registration{}, false, nil
	}
	return reg, true, nil
}

func (r *fakeRouter) addAccount(merchant, user, password string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accounts[user] = Account{User: user, Merchant: merchant, HA1MD5: HA1("MD5", user, password), HA1SHA256: HA1("SHA-256", user, password)}
}

func (r *fakeRouter) addBinding(t Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts[t.Host] = true
	r.bindings[t.Host+"/"+t.Extension] = t
}

func (r *fakeRouter) addCallback(x, caller string, cb Callback) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, err := binding.NormaliseConsignee(caller); err == nil {
		caller = n // the server looks callers up by their normalised number
	}
	r.callbacks[x+"/"+caller] = cb
}

func (r *fakeRouter) expire(x, ext string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expired[x+"/"+ext] = true
}

func (r *fakeRouter) Account(_ context.Context, user string) (Account, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.accounts[user]
	if !ok {
		return Account{}, ErrUnknownAccount
	}
	return a, nil
}

func (r *fakeRouter) IsHostNumber(_ context.Context, x string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hostAsks++
	return r.hosts[x], nil
}

func (r *fakeRouter) Resolve(_ context.Context, x, ext, merchant string) (Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.expired[x+"/"+ext] {
		return Target{}, ErrExpired
	}
	t, ok := r.bindings[x+"/"+ext]
	if !ok || (merchant != "" && t.Merchant != merchant) {
		return Target{}, ErrInvalidExtension
	}
	return t, nil
}

func (r *fakeRouter) Callback(_ context.Context, x, caller string) (Callback, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.remember {
		for _, t := range r.bindings {
			if t.Host != x || t.Consignee != caller {
				continue
			}
			cb := Callback{Target: t}
			for i := len(r.order) - 1; i >= 0; i-- {
				if c := r.cdrs[r.order[i]]; c.BindingID == t.BindingID && c.Direction == "to_consignee" && !c.AnsweredAt.IsZero() {
					// By the kind recorded with the call, as the store decides.
					if c.CallerKind == callrec.CallerAccount {
						cb.Account = c.Caller
					} else {
						cb.Number = c.Caller
					}
					break
				}
			}
			return cb, nil
		}
		return Callback{}, ErrInvalidExtension
	}
	cb, ok := r.callbacks[x+"/"+caller]
	if !ok {
		return Callback{}, ErrInvalidExtension
	}
	return cb, nil
}

// PhoneNumber applies the store's own rules for numbers.
func (r *fakeRouter) PhoneNumber(raw string) (string, error) { return binding.NormaliseConsignee(raw) }

func (r *fakeRouter) StartCall(_ context.Context, c *CDR) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cdrs[c.ID] = *c
	r.writes[c.ID] = append(r.writes[c.ID], *c)
	r.order = append(r.order, c.ID)
	return nil
}

func (r *fakeRouter) UpdateCall(_ context.Context, c *CDR, legs Legs) error {
	r.mu.Lock()
	gate := r.slowAnswer
	r.mu.Unlock()
	if gate != nil && !c.AnsweredAt.IsZero() {
		<-gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cdrs[c.ID] = *c
	r.writes[c.ID] = append(r.writes[c.ID], *c)
	r.legs[c.ID] = legs
	return nil
}

// writesOf returns every write of the record id, in order.
func (r *fakeRouter) writesOf(id string) []CDR {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.writes[id])
}

// keptLegs returns the dialogs the store keeps for the call's open record.
func (r *fakeRouter) keptLegs(id string) Legs {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.legs[id]
}

func (r *fakeRouter) EndCall(_ context.Context, c *CDR) error {
	r.mu.Lock()
	r.cdrs[c.ID] = *c
	r.writes[c.ID] = append(r.writes[c.ID], *c)
	delete(r.legs, c.ID) // as the store forgets them when the record ends
	r.mu.Unlock()
	r.ended <- *c
	return nil
}

func (r *fakeRouter) waitEnded(t testing.TB) CDR {
	t.Helper()
	select {
	case c := <-r.ended:
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("no CDR finished")
	}
	return CDR{}
}

// testEnv is a running vnum server with a fake router, a carrier and a
// merchant softphone.
type testEnv struct {
	t       testing.TB
	srv     *Server
	router  *fakeRouter
	carrier *sipua.Carrier
	phone   *sipua.Softphone
	ports   *media.Ports
	vnum    netip.AddrPort
	logs    *lockedBuffer
}

// assertLogsPrivate: vnum's log at info level never holds B's number.
func (e *testEnv) assertLogsPrivate() {
	e.t.Helper()
	logs := e.logs.String()
	require.NotEmpty(e.t, logs)
	require.NotContains(e.t, logs, testNational, "B's number in the info log")
}

const (
	testHost      = "17000000001"
	testExt       = "1234"
	testConsignee = "+8613800138000"
	testNational  = "13800138000"
)

func newTestEnv(t testing.TB, carrierMode string, tweak func(*Options)) *testEnv {
	t.Helper()
	return newTestEnvWith(t, sipua.CarrierOptions{Mode: carrierMode}, tweak)
}

func newTestEnvWith(t testing.TB, co sipua.CarrierOptions, tweak func(*Options)) *testEnv {
	t.Helper()
	return newTestEnvRouter(t, co, tweak, nil)
}

// newTestEnvRouter is newTestEnvWith whose server uses wrap(router) as
// its Router (when wrap is set), for tests of a misbehaving store.
func newTestEnvRouter(t testing.TB, co sipua.CarrierOptions, tweak func(*Options), wrap func(*fakeRouter) Router) *testEnv {
	t.Helper()
	router := newFakeRouter()
	router.addAccount("m1", "alice", "s3cret")
	router.addBinding(Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee})
	car, err := sipua.NewCarrier(co, nil)
	require.NoError(t, err)
	t.Cleanup(car.Close)
	phone, err := sipua.NewSoftphone("alice", "s3cret", nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	ports, err := media.NewPorts("127.0.0.1", 0, 0) // the kernel picks each pair
	require.NoError(t, err)
	opts := Options{
		Listen:            []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0"},
		DigestAlgorithms:  []string{"MD5"},
		AuthFailures:      10,
		BlockFor:          time.Minute,
		Ports:             ports,
		MediaTimeout:      30 * time.Second,
		ExtensionDigits:   4,
		FirstDigitTimeout: 2 * time.Second,
		InterDigitTimeout: time.Second,
		Attempts:          3,
		AnswerMode:        "answer",
		Language:          "en",
		TrunkOutbound:     "sip:" + car.Addr.String() + ";transport=udp",
		NumberFormat:      "national",
		RingTimeout:       10 * time.Second,
		MaxDuration:       time.Hour,
		DrainTimeout:      2 * time.Second,
		// Tests run in parallel, under the race detector, on a shared
		// machine: a standing queue in the SIP socket is likely there and
		// not what most tests are about. The admission tests turn the
		// check back on.
		MaxQueueDelay: -1,
	}
	logs := &lockedBuffer{}
	opts.Logger = testLogger(logs)
	if tweak != nil {
		tweak(&opts)
	}
	var r Router = router
	if wrap != nil {
		r = wrap(router)
	}
	srv, err := NewServer(opts, r)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, srv.Start(ctx))
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		cancel()
		if t.Failed() {
			// What the server said, for the failure's cause.
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			t.Logf("---- vnum's log (info), last %d of %d lines:\n%s", min(len(lines), 60), len(lines),
				strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	return &testEnv{
		t: t, srv: srv, router: router, carrier: car, ports: ports, logs: logs,
		phone: phone,
		vnum:  netip.MustParseAddrPort(srv.Addr("udp")),
	}
}

// testLogger keeps the server's info-level log in buf (the privacy checks
// read it), and with VNUMTEST_LOG set also writes everything to stderr.
func testLogger(buf *lockedBuffer) *slog.Logger {
	info := slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	if os.Getenv("VNUMTEST_LOG") != "" {
		return slog.New(teeHandler{info, slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})})
	}
	return slog.New(info)
}

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// teeHandler sends each record to two handlers.
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if t.a.Enabled(ctx, r.Level) {
		if err := t.a.Handle(ctx, r.Clone()); err != nil {
			return err
		}
	}
	if t.b.Enabled(ctx, r.Level) {
		return t.b.Handle(ctx, r)
	}
	return nil
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t teeHandler) WithGroup(n string) slog.Handler {
	return teeHandler{t.a.WithGroup(n), t.b.WithGroup(n)}
}

// waitNoCalls waits until the server holds no call and every RTP port is
// back in the pool.
func (e *testEnv) waitNoCalls() {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		return e.srv.ActiveCalls() == 0 && e.ports.InUse() == 0
	}, 10*time.Second, 20*time.Millisecond, "calls=%d ports=%d", e.srv.ActiveCalls(), e.ports.InUse())
}

// waitState waits until the server holds exactly one call and that call
// is in state (CallState's name, as /v1/calls shows it).
func (e *testEnv) waitState(state CallState) {
	e.t.Helper()
	var calls []CallInfo
	require.Eventually(e.t, func() bool {
		calls = e.srv.Calls()
		return len(calls) == 1 && calls[0].State == state.String()
	}, 10*time.Second, 5*time.Millisecond, "want one call in state %s, have %+v", state, calls)
}

// waitLogged waits until the server's info log holds n lines with the
// message msg: the sign that the call has passed that step.
func (e *testEnv) waitLogged(msg string, n int) {
	e.t.Helper()
	needle := "msg=" + msg + " "
	if strings.ContainsAny(msg, " =\"") {
		needle = "msg=" + strconv.Quote(msg) + " " // as slog's text handler writes it
	}
	require.Eventually(e.t, func() bool { return strings.Count(e.logs.String(), needle) >= n },
		10*time.Second, 5*time.Millisecond, "want %d log lines %s", n, needle)
}

// drainAndCallAgain starts the server's Shutdown, waits until it stops
// listening and places a new call: that call must get 503 with a
// Retry-After (README "SIP behaviour in short"), which it returns. stopped closes when Shutdown
// returns.
func (e *testEnv) drainAndCallAgain(ctx context.Context) (stopped <-chan struct{}, res *sip.Response) {
	e.t.Helper()
	done := make(chan struct{})
	go func() {
		e.srv.Shutdown(context.Background())
		close(done)
	}()
	require.Eventually(e.t, func() bool { return !e.srv.Listening() }, 5*time.Second, 10*time.Millisecond)
	other, err := sipua.NewSoftphone("alice", "s3cret", nil)
	require.NoError(e.t, err)
	e.t.Cleanup(other.Close)
	_, err = other.Call(ctx, e.vnum, testHost)
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(e.t, err, &dr)
	require.Equal(e.t, 503, dr.Res.StatusCode, "no new calls while draining")
	require.NotNil(e.t, dr.Res.GetHeader("Retry-After"))
	return done, dr.Res
}

// assertPrivate is the privacy invariant: nothing leg A receives contains
// B; nothing leg B receives contains the caller's identity.
func assertPrivate(t *testing.T, phone *sipua.Softphone, car *sipua.Carrier, callerCallID, fromTag string) {
	t.Helper()
	forbiddenA := []string{testNational, strings.TrimPrefix(testConsignee, "+")}
	for _, m := range phone.Received() {
		for _, f := range forbiddenA {
			require.NotContains(t, m, f, "caller saw the consignee's number in:\n%s", m)
		}
	}
	forbiddenB := []string{phone.User, "softphone", callerCallID, fromTag,
		"127.0.0.1:" + strconv.Itoa(int(phone.Addr.Port())), "m=audio " + strconv.Itoa(phone.RTPPort()) + " "}
	for _, m := range car.Received() {
		for _, f := range forbiddenB {
			if f == "" {
				continue
			}
			require.NotContains(t, m, f, "carrier saw the caller's identity %q in:\n%s", f, m)
		}
	}
}

// requireRefusedUnanswered is answer supervision seen by a caller whose
// call could not reach B: err is the INVITE's final status code, and the
// caller never had a 2xx for it (received holds what the caller's phone
// got). It returns the final response.
func requireRefusedUnanswered(t testing.TB, err error, code int, received []string) *sip.Response {
	t.Helper()
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(t, err, &dr, "want a final %d, not an answer", code)
	require.Equal(t, code, dr.Res.StatusCode)
	callID := dr.Res.CallID().Value()
	for _, m := range received {
		if strings.HasPrefix(m, "SIP/2.0 200") && strings.Contains(m, callID) && strings.Contains(m, "INVITE") {
			t.Fatalf("the caller got a 200 for a call B never answered:\n%s", m)
		}
	}
	return dr.Res
}

// hostLookups is how many times the pool was asked whether a number is a
// host number.
func (r *fakeRouter) hostLookups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hostAsks
}
