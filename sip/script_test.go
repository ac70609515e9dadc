package sip

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// The call's script without sockets: a call gets fakes for every
// dependency (leg A's dialog, leg B's dialer and forks, the media ports
// and streams, the store) and runs on its own goroutine as it does in the
// server; the test plays the caller, the consignee and the store by
// posting the events the server's handlers post. The socket tests
// (call_test.go and the others) drive the same script through sipgo.

// fakeCallerDialog is leg A's dialog: it notes what vnum answered, and
// its caller acknowledges a 2xx at once (as the server's ACK handler
// posts it before sipgo lets the answer return).
type fakeCallerDialog struct {
	ctx    context.Context
	cancel context.CancelFunc
	h      *callHandle // where the caller's ACK goes
	cseq   uint32      // the INVITE's CSeq

	mu        sync.Mutex
	responses []*sip.Response
	answers   int // 2xx sent
	byes      int
	state     sip.DialogState
}

func (d *fakeCallerDialog) Respond(code int, reason string, body []byte, hdrs ...sip.Header) error {
	res := sip.NewResponse(code, reason)
	res.SetBody(body)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.responses = append(d.responses, res)
	return nil
}

func (d *fakeCallerDialog) RespondSDP(sdp []byte) error {
	d.mu.Lock()
	d.answers++
	d.state = sip.DialogStateConfirmed
	d.mu.Unlock()
	d.h.post(ackEvent{leg: legA, cseq: d.cseq})
	return nil
}

func (d *fakeCallerDialog) Bye(context.Context) error {
	d.mu.Lock()
	d.byes++
	d.state = sip.DialogStateEnded
	d.mu.Unlock()
	d.cancel()
	return nil
}

func (d *fakeCallerDialog) Context() context.Context { return d.ctx }

func (d *fakeCallerDialog) LoadState() sip.DialogState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// final is the caller's final response, nil before one went out.
func (d *fakeCallerDialog) final() *sip.Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.responses {
		if r.StatusCode >= 200 {
			return r
		}
	}
	return nil
}

// answered is how many 2xx vnum sent the caller.
func (d *fakeCallerDialog) answered() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.answers
}

// byesSent is how many BYEs vnum sent the caller.
func (d *fakeCallerDialog) byesSent() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byes
}

// hangUp is the caller's BYE, as the server's BYE handler passes it on.
func (d *fakeCallerDialog) hangUp() {
	d.h.post(goneEvent{leg: legA, bye: true, confirmed: true})
	d.cancel()
}

// forkScript is how one INVITE of leg B goes: it is given the INVITE and
// the progress callback, and returns the final response (an error for a
// refusal, as sipgo's WaitAnswer returns one).
type forkScript func(ctx context.Context, req *sip.Request, progress func(*sip.Response)) (*sip.Response, error)

// fakeFork is one INVITE of leg B.
type fakeFork struct {
	req    *sip.Request
	script forkScript
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	res   *sip.Response
	acks  int
	byes  int
	state sip.DialogState
}

func (f *fakeFork) WaitAnswer(ctx context.Context, opts sipgo.AnswerOptions) error {
	res, err := f.script(ctx, f.req, func(r *sip.Response) { _ = opts.OnResponse(r) })
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res = res
	if err == nil {
		f.state = sip.DialogStateEstablished
	}
	return err
}

func (f *fakeFork) Ack(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks++
	f.state = sip.DialogStateConfirmed
	return nil
}

func (f *fakeFork) Bye(context.Context) error {
	f.mu.Lock()
	f.byes++
	f.state = sip.DialogStateEnded
	f.mu.Unlock()
	f.cancel()
	return nil
}

func (f *fakeFork) ReadBye(*sip.Request, sip.ServerTransaction) error { return nil }
func (f *fakeFork) Context() context.Context                          { return f.ctx }
func (f *fakeFork) request() *sip.Request                             { return f.req }

func (f *fakeFork) LoadState() sip.DialogState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeFork) answer() *sip.Response {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.res
}

// counts is how many ACKs and BYEs vnum sent in the fork.
func (f *fakeFork) counts() (acks, byes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acks, f.byes
}

// fakeDialer sends leg B's INVITEs to scripted forks.
type fakeDialer struct {
	script forkScript

	mu    sync.Mutex
	forks []*fakeFork
}

func (d *fakeDialer) invite(_ context.Context, req *sip.Request, _ *callHandle) (calleeDialog, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeFork{req: req, script: d.script, ctx: ctx, cancel: cancel}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forks = append(d.forks, f)
	return f, nil
}

func (d *fakeDialer) contact() sip.ContactHeader {
	return sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "vnum", Host: "192.0.2.10", Port: 5060}}
}

// fork returns leg B's only fork, once it was sent.
func (d *fakeDialer) fork(t *testing.T) *fakeFork {
	t.Helper()
	var f *fakeFork
	require.Eventually(t, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.forks) == 1 {
			f = d.forks[0]
		}
		return f != nil
	}, 10*time.Second, time.Millisecond)
	return f
}

// fakeRoutes sends leg B to a carrier trunk; there are no softphones.
type fakeRoutes struct{}

func (fakeRoutes) viaTrunk(number string) (legBTarget, bool) {
	user := formatNumber(number, config.NumberFormatNational)
	return legBTarget{uri: sip.Uri{Scheme: "sip", User: user, Host: "192.0.2.20", Port: 5060},
		to: sip.Uri{Scheme: "sip", User: user, Host: "192.0.2.20"}, trunk: true}, true
}

func (fakeRoutes) toSoftphone(context.Context, string) (legBTarget, bool) { return legBTarget{}, false }

// fakeMedia hands out port pairs and streams that bind nothing.
type fakeMedia struct {
	mu      sync.Mutex
	opened  int
	streams []*fakeStream
	relays  [][2]legStream
}

func (m *fakeMedia) openPair() (mediaPair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opened++
	return &fakePair{m: m, port: 40000 + 2*m.opened}, nil
}

func (m *fakeMedia) relay(from, to legStream) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relays = append(m.relays, [2]legStream{from, to})
	return nil
}

// stream returns the i-th stream started (0: leg A's, 1: leg B's).
func (m *fakeMedia) stream(t *testing.T, i int) *fakeStream {
	t.Helper()
	var s *fakeStream
	require.Eventually(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		if len(m.streams) > i {
			s = m.streams[i]
		}
		return s != nil
	}, 10*time.Second, time.Millisecond)
	return s
}

// bridged reports whether both legs relay to each other.
func (m *fakeMedia) bridged(a, b legStream) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Contains(m.relays, [2]legStream{a, b}) && slices.Contains(m.relays, [2]legStream{b, a})
}

type fakePair struct {
	m      *fakeMedia
	port   int
	closed atomic.Bool
}

func (p *fakePair) addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), uint16(p.port))
}

func (p *fakePair) start(s streamSpec, _ *slog.Logger) legStream {
	st := &fakeStream{audio: s.audio, remote: s.remote, digits: make(chan rune, 64)}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	p.m.streams = append(p.m.streams, st)
	return st
}

func (p *fakePair) Close() error {
	p.closed.Store(true)
	return nil
}

// fakeStream is a leg's stream: what it plays is noted, and each play
// takes a moment; the test keys digits on it.
type fakeStream struct {
	digits chan rune

	mu     sync.Mutex
	audio  media.Codec
	remote netip.AddrPort
	played [][]int16
	closed bool
}

func (s *fakeStream) Play(ctx context.Context, pcm []int16) error {
	s.mu.Lock()
	s.played = append(s.played, pcm)
	s.mu.Unlock()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Millisecond):
		return nil
	}
}

func (s *fakeStream) Digits() <-chan rune                           { return s.digits }
func (s *fakeStream) Quiet(time.Duration) (<-chan struct{}, func()) { return nil, func() {} }
func (s *fakeStream) StopRelay()                                    {}
func (s *fakeStream) WatchKeys(bool)                                {}
func (s *fakeStream) SetTap(media.Tap)                              {}

func (s *fakeStream) Audio() media.Codec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.audio
}

func (s *fakeStream) SetCodecs(audio media.Codec, _ *media.Codec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audio = audio
}

func (s *fakeStream) SetRemote(remote netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remote = remote
}

func (s *fakeStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *fakeStream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// key keys digits on the stream, as RFC 4733 events would.
func (s *fakeStream) key(digits string) {
	for _, d := range digits {
		s.digits <- d
	}
}

// heard reports whether the stream played the named prompt.
func (s *fakeStream) heard(t *testing.T, name string) bool {
	t.Helper()
	want, err := media.Prompt("en", name)
	require.NoError(t, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.played, func(p []int16) bool { return slices.Equal(p, want) })
}

// scriptEnv is a call's dependencies, every one a fake.
type scriptEnv struct {
	t      *testing.T
	deps   *callDeps
	router *fakeRouter
	media  *fakeMedia
	dialer *fakeDialer
	door   *frontdoor.Door
}

// newScriptEnv makes the dependencies of calls whose leg B goes as
// script says; store wraps the store when set.
func newScriptEnv(t *testing.T, script forkScript, store func(*fakeRouter) Router, tweak func(*callOptions)) *scriptEnv {
	t.Helper()
	router := newFakeRouter()
	router.addBinding(Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee})
	var r Router = router
	if store != nil {
		r = store(router)
	}
	e := &scriptEnv{t: t, router: router, media: &fakeMedia{}, dialer: &fakeDialer{script: script},
		door: frontdoor.New(frontdoor.Options{DrainTimeout: time.Second})}
	log := testLogger(&lockedBuffer{})
	timeout := storeTimeout(time.Second)
	e.deps = &callDeps{
		opts: callOptions{host: "192.0.2.10", answerMode: config.AnswerAnswer, language: "en",
			extensionDigits: 4, attempts: 3, firstDigitTimeout: 2 * time.Second, interDigitTimeout: time.Second,
			ringTimeout: 5 * time.Second, mediaTimeout: time.Minute, maxDuration: time.Minute,
			cdrRefresh: time.Minute, storeTimeout: timeout},
		directory:    r,
		recorder:     r,
		protector:    protectorOf(r),
		protected:    &protectedCounts{},
		media:        e.media,
		legB:         e.dialer,
		routes:       fakeRoutes{},
		refusals:     e.door,
		walks:        newWalkLimit(0, nil),
		backlog:      newCDRBacklog(r.EndCall, timeout.ctx, nil, log),
		legBFailures: &legBFailureCounts{},
		panics:       &panicCounter{log: log},
		log:          log,
	}
	if tweak != nil {
		tweak(&e.deps.opts)
	}
	return e
}

// scriptCall is a call running on its own goroutine.
type scriptCall struct {
	c    *call
	a    *fakeCallerDialog
	done chan struct{} // closed when the call's goroutine returns
}

// call makes a call from alice dialling dialled and runs it.
func (e *scriptEnv) call(dialled string) *scriptCall {
	e.t.Helper()
	d, err := ParseDialled(dialled, "")
	require.NoError(e.t, err)
	offerBody := media.Offer(netip.MustParseAddr("198.51.100.7"), 30000, 1, []media.Codec{{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1}}, nil)
	offer, err := media.ParseSDP(offerBody)
	require.NoError(e.t, err)
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: dialled, Host: "192.0.2.10"})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "198.51.100.7"}, Params: sip.NewParams()})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: dialled, Host: "192.0.2.10"}, Params: sip.NewParams()})
	cid := sip.CallIDHeader("caller-call-id")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 7, MethodName: sip.INVITE})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "198.51.100.7", Port: 5062}})
	req.SetSource("198.51.100.7:5062")
	req.SetBody(offerBody)

	ctx, cancel := context.WithCancel(context.Background())
	a := &fakeCallerDialog{ctx: ctx, cancel: cancel, cseq: 7}
	c := newCall(e.deps, callSetup{id: "call-1", log: e.deps.log, invite: req, legA: a, dialogInvite: req,
		contact: e.dialer.contact(), caller: caller{account: Account{User: "alice", Merchant: "m1"}},
		dialled: d, offer: offer, setUp: func() {}})
	a.h = c.h
	sc := &scriptCall{c: c, a: a, done: make(chan struct{})}
	// The call's end releases what its handler took, once: the script's
	// end.
	go c.serve(func() { close(sc.done) })
	e.t.Cleanup(func() {
		c.h.hangup(reasonShutdown)
		<-sc.done
	})
	return sc
}

// state waits until the call shows state (as /v1/calls shows it).
func (sc *scriptCall) state(t *testing.T, state CallState) {
	t.Helper()
	require.Eventually(t, func() bool { return sc.c.h.info().State == state.String() }, 10*time.Second, time.Millisecond,
		"want %s, have %s", state, sc.c.h.info().State)
}

// ended waits for the call's goroutine to return.
func (sc *scriptCall) ended(t *testing.T) {
	t.Helper()
	select {
	case <-sc.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the call did not end")
	}
}

// answers is leg B answering at once, after ringing, with an SDP answer
// in PCMU.
func answers(_ context.Context, req *sip.Request, progress func(*sip.Response)) (*sip.Response, error) {
	progress(sip.NewResponseFromRequest(req, sip.StatusRinging, "Ringing", nil))
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK",
		media.Offer(netip.MustParseAddr("203.0.113.5"), 31000, 2, []media.Codec{{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1}}, nil))
	return res, nil
}

// busy is leg B refusing with 486 after ringing.
func busy(_ context.Context, req *sip.Request, progress func(*sip.Response)) (*sip.Response, error) {
	progress(sip.NewResponseFromRequest(req, sip.StatusRinging, "Ringing", nil))
	res := sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil)
	return res, &sipgo.ErrDialogResponse{Res: res}
}

// TestScriptBridgedThenHungUp: an IVR call is answered, the caller keys
// the extension, leg B rings and answers, the legs are bridged, and either
// side hangs up: vnum hangs up the other, frees the media and finishes
// the record as answered, hung up by whoever did.
func TestScriptBridgedThenHungUp(t *testing.T) {
	t.Parallel()
	for _, side := range []string{"caller", "callee"} {
		t.Run(side, func(t *testing.T) {
			t.Parallel()
			e := newScriptEnv(t, answers, nil, nil)
			sc := e.call(testHost)
			sc.state(t, StateIVR)
			a := e.media.stream(t, 0)
			a.key(testExt)

			f := e.dialer.fork(t)
			sc.state(t, StateBridged)
			b := e.media.stream(t, 1)
			require.True(t, e.media.bridged(a, b), "the relay runs both ways")
			require.Equal(t, 1, sc.a.answered(), "the IVR's caller was answered once")
			// Leg B's INVITE shows X and dials B on the trunk: nothing of
			// the caller (README "SIP behaviour in short").
			require.Equal(t, testNational, f.req.Recipient.User)
			require.Equal(t, testHost, f.req.From().Address.User)
			require.NotContains(t, f.req.String(), "alice")
			require.NotContains(t, f.req.String(), "caller-call-id")
			require.NotContains(t, f.req.String(), "198.51.100.7")
			acks, _ := f.counts()
			require.Equal(t, 1, acks, "B's answer acknowledged")

			if side == "caller" {
				sc.a.hangUp()
			} else {
				sc.c.h.post(goneEvent{leg: legB, bye: true, dialog: f})
			}
			cdr := e.router.waitEnded(t)
			sc.ended(t)
			require.Equal(t, "answered", string(cdr.Disposition))
			require.Equal(t, side, string(cdr.HangupBy))
			require.Equal(t, "b1", cdr.BindingID)
			require.Equal(t, testExt, cdr.Extension)
			require.False(t, cdr.AnsweredAt.IsZero())
			_, byes := f.counts()
			if side == "caller" {
				require.Equal(t, 1, byes, "vnum hangs up B")
				require.Zero(t, sc.a.byesSent(), "the caller hung up itself")
			} else {
				require.Zero(t, byes, "B hung up itself")
				require.Equal(t, 1, sc.a.byesSent(), "vnum hangs up the caller")
			}
			require.True(t, a.isClosed() && b.isClosed(), "both streams closed")
			require.Equal(t, "ending", sc.c.h.info().State)
		})
	}
}

// TestScriptWrongExtensionToGoodbye: a caller who keys a wrong extension
// three times hears the invalid prompt, then goodbye, and is hung up; leg
// B is never dialled, and the record says invalid_extension with 404.
func TestScriptWrongExtensionToGoodbye(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t, answers, nil, nil)
	sc := e.call(testHost)
	sc.state(t, StateIVR)
	a := e.media.stream(t, 0)
	a.key("999999999999") // three wrong extensions of four digits

	cdr := e.router.waitEnded(t)
	sc.ended(t)
	require.Equal(t, "invalid_extension", string(cdr.Disposition))
	require.Equal(t, "system", string(cdr.HangupBy))
	require.Equal(t, 404, cdr.SIPStatus)
	require.Equal(t, "9999", cdr.Extension)
	require.True(t, a.heard(t, media.PromptEnterExtension))
	require.True(t, a.heard(t, media.PromptInvalid))
	require.True(t, a.heard(t, media.PromptGoodbye), "goodbye before the hang-up")
	require.Equal(t, 1, sc.a.byesSent(), "the answered caller is hung up")
	require.Empty(t, e.dialer.forks, "no leg B for a wrong extension")
}

// TestScriptBusyConsignee: a direct dial whose consignee is busy is never
// answered: the caller hears ringing, then the busy prompt as early
// media, then 486 with the Q.850 cause of a busy user (RFC 3326); leg B's
// failure is counted, the record says busy.
func TestScriptBusyConsignee(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t, busy, nil, nil)
	sc := e.call(testHost + "-" + testExt)
	cdr := e.router.waitEnded(t)
	sc.ended(t)
	require.Equal(t, "busy", string(cdr.Disposition))
	require.Equal(t, "callee", string(cdr.HangupBy))
	require.Equal(t, 486, cdr.SIPStatus)
	require.True(t, cdr.AnsweredAt.IsZero())

	res := sc.a.final()
	require.NotNil(t, res)
	require.Equal(t, 486, res.StatusCode)
	require.Equal(t, "Busy Here", res.Reason)
	require.Contains(t, res.GetHeader("Reason").Value(), "cause=17")
	require.Nil(t, res.GetHeader("Retry-After"), "B busy is not vnum out of service")
	require.Zero(t, sc.a.answered(), "answer supervision: a call B never answered gets no 2xx")
	require.Zero(t, sc.a.byesSent())
	require.True(t, e.media.stream(t, 0).heard(t, media.PromptBusy), "the busy prompt, as early media")
	require.Equal(t, map[string]int64{"486": 1}, e.deps.legBFailures.byStatus())
}

// stallingStore is a store that stops answering one kind of call until
// its context ends, as a database driver does, and notes the deadline it
// was given.
type stallingStore struct {
	*fakeRouter
	stall    string // "resolve" or "start"
	deadline chan time.Duration
}

func (s *stallingStore) block(ctx context.Context, what string) error {
	if what != s.stall {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		s.deadline <- time.Until(dl)
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *stallingStore) Resolve(ctx context.Context, x, ext, merchant string) (Target, error) {
	if err := s.block(ctx, "resolve"); err != nil {
		return Target{}, err
	}
	return s.fakeRouter.Resolve(ctx, x, ext, merchant)
}

func (s *stallingStore) StartCall(ctx context.Context, c *CDR) error {
	if err := s.block(ctx, "start"); err != nil {
		return err
	}
	return s.fakeRouter.StartCall(ctx, c)
}

// TestScriptStoreStalls: a store that does not answer within
// store.timeout ends the call with 503 and a Retry-After, never an
// answer: while the binding is looked up (the call's record is finished
// as failed), or while the record is first written (no call at all: no
// port, no leg B, counted as store_slow).
func TestScriptStoreStalls(t *testing.T) {
	t.Parallel()
	const timeout = 50 * time.Millisecond
	for _, stall := range []string{"resolve", "start"} {
		t.Run(stall, func(t *testing.T) {
			t.Parallel()
			var store *stallingStore
			e := newScriptEnv(t, answers, func(r *fakeRouter) Router {
				store = &stallingStore{fakeRouter: r, stall: stall, deadline: make(chan time.Duration, 1)}
				return store
			}, func(o *callOptions) { o.storeTimeout = storeTimeout(timeout) })
			sc := e.call(testHost + "-" + testExt)
			require.LessOrEqual(t, <-store.deadline, timeout, "the store call had store.timeout")
			sc.ended(t)

			res := sc.a.final()
			require.NotNil(t, res)
			require.Equal(t, 503, res.StatusCode)
			require.Equal(t, frontdoor.RetryAfterBusy, res.GetHeader("Retry-After").Value())
			require.Zero(t, sc.a.answered())
			require.Empty(t, e.dialer.forks, "leg B is never dialled")
			if stall == "start" {
				require.Zero(t, e.media.opened, "no RTP port for a call without a record")
				require.EqualValues(t, 1, e.door.Refused()[frontdoor.ReasonStoreSlow])
				require.Zero(t, cdrCount(e.router), "no record")
				return
			}
			cdr := e.router.waitEnded(t)
			require.Equal(t, "failed", string(cdr.Disposition))
			require.Equal(t, 503, cdr.SIPStatus)
			require.Equal(t, testExt, cdr.Extension)
		})
	}
}
