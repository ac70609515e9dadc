package sip

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/sipua"
)

// The tests in this file drive races on purpose: two messages that vnum
// handles on different goroutines are released at the same instant (a
// closed channel), and each test asserts what must hold whichever wins:
// the outcome for the caller and the carrier, and the CDR. They are run
// with go test -race -count=20 -run TestRace.

// scriptedCarrier is a carrier trunk whose handling of each INVITE the
// test scripts: it answers 180 at once, then waits for the test.
type scriptedCarrier struct {
	*sipua.Peer
	dialogs *sipgo.DialogServerCache
	calls   chan *carrierCall
}

// carrierCall is one INVITE the scripted carrier received.
type carrierCall struct {
	req *sip.Request
	ds  *sipgo.DialogServerSession
	act chan func(*sipgo.DialogServerSession) // run on the INVITE's handler
	// acted is closed once the handler ran act: the test may then use ds.
	acted chan struct{}
}

func newScriptedCarrier(t *testing.T) *scriptedCarrier {
	t.Helper()
	p, err := sipua.NewPeer("carrier", nil)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	c := &scriptedCarrier{Peer: p, dialogs: sipgo.NewDialogServerCache(p.Client, p.Contact), calls: make(chan *carrierCall, 8)}
	p.Server.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if to := req.To(); to != nil && to.Params.Has("tag") {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", c.SDP(sipua.PCMU)))
			return
		}
		ds, err := c.dialogs.ReadInvite(req, tx)
		if err != nil {
			return
		}
		defer ds.Close()
		if ds.Respond(180, "Ringing", nil) != nil {
			return
		}
		cc := &carrierCall{req: req, ds: ds, act: make(chan func(*sipgo.DialogServerSession), 1), acted: make(chan struct{})}
		c.calls <- cc
		select {
		case f := <-cc.act:
			f(ds)
			close(cc.acted)
		case <-ds.Context().Done():
			return
		}
		<-ds.Context().Done()
	})
	p.Server.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = c.dialogs.ReadAck(req, tx) })
	p.Server.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := c.dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	p.Serve()
	return c
}

// next returns the next INVITE the carrier got.
func (c *scriptedCarrier) next(t *testing.T) *carrierCall {
	t.Helper()
	select {
	case cc := <-c.calls:
		return cc
	case <-time.After(15 * time.Second):
		t.Fatal("the carrier got no INVITE")
	}
	return nil
}

// answerWith answers the call with body when gate opens.
func (cc *carrierCall) answerWith(gate <-chan struct{}, body []byte) {
	cc.act <- func(ds *sipgo.DialogServerSession) {
		<-gate
		_ = ds.RespondSDP(body)
	}
}

// requireEnded waits until the carrier's dialog of cc is over (BYE,
// CANCEL or a final refusal): vnum left nothing up on leg B.
func (cc *carrierCall) requireEnded(t *testing.T) {
	t.Helper()
	select {
	case <-cc.ds.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("leg B's dialog was left up (state %v)", cc.ds.LoadState())
	}
}

// scriptedEnv is a test server whose trunk is a scripted carrier.
func scriptedEnv(t *testing.T, tweak func(*Options)) (*testEnv, *scriptedCarrier) {
	t.Helper()
	sc := newScriptedCarrier(t)
	e := newTestEnv(t, "answer", func(o *Options) {
		o.TrunkOutbound = "sip:" + sc.Addr.String() + ";transport=udp"
		if tweak != nil {
			tweak(o)
		}
	})
	return e, sc
}

func earlyMode(o *Options) { o.AnswerMode = "early"; o.FirstDigitTimeout = 5 * time.Second }

// earlyCall dials X in early mode and keys E in the 183's early media; it
// returns the dialog and a channel with WaitAnswer's result.
func (e *testEnv) earlyCall(ctx context.Context) (*sipgo.DialogClientSession, <-chan error) {
	e.t.Helper()
	d, err := e.phone.Invite(ctx, e.vnum, testHost)
	require.NoError(e.t, err)
	errc := make(chan error, 1)
	var once sync.Once
	go func() {
		errc <- d.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "alice", Password: "s3cret",
			OnResponse: func(r *sip.Response) error {
				if r.StatusCode == 183 {
					once.Do(func() {
						if to, err := sipua.MediaAddr(r.Body()); err == nil {
							go func() { _ = sipua.SendDigits(e.phone.RTP, to, 101, testExt) }()
						}
					})
				}
				return nil
			}})
	}()
	return d, errc
}

// inDialog builds a request in the caller's dialog d with an explicit
// CSeq, so that two of them can be sent at once.
func inDialog(d *sipgo.DialogClientSession, method sip.RequestMethod, seq uint32) *sip.Request {
	req := sip.NewRequest(method, d.InviteResponse.Contact().Address)
	req.AppendHeader(sip.HeaderClone(d.InviteRequest.From()))
	req.AppendHeader(sip.HeaderClone(d.InviteResponse.To()))
	req.AppendHeader(sip.HeaderClone(d.InviteRequest.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetDestination(d.InviteResponse.Source())
	return req
}

// requireNoByeFromVnum: vnum sent the caller no BYE (it hung up itself).
func requireNoByeFromVnum(t *testing.T, p *sipua.Softphone) {
	t.Helper()
	for _, m := range p.Received() {
		require.False(t, strings.HasPrefix(m, "BYE "), "vnum sent a BYE to a caller who hung up:\n%s", m)
	}
}

// TestRaceByeCrossesAck: in early mode the caller gets our 200 when B
// answers, and sends its ACK and its BYE at the same instant. Whichever
// vnum handles first, the caller took the call: the CDR is answered and
// hung up by the caller, B gets a BYE, and the caller none.
func TestRaceByeCrossesAck(t *testing.T) {
	e, sc := scriptedEnv(t, earlyMode)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, answered := e.earlyCall(ctx)
	cc := sc.next(t)
	open := make(chan struct{})
	close(open)
	cc.answerWith(open, sc.SDP(sipua.PCMU))
	require.NoError(t, <-answered)

	seq := d.InviteRequest.CSeq().SeqNo
	ack, bye := inDialog(d, sip.ACK, seq), inDialog(d, sip.BYE, seq+1)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	var byeRes *sip.Response
	var byeErr error
	wg.Add(2)
	go func() { defer wg.Done(); <-gate; _ = e.phone.Client.WriteRequest(ack) }()
	go func() { defer wg.Done(); <-gate; byeRes, byeErr = e.phone.Client.Do(ctx, bye) }()
	close(gate)
	wg.Wait()
	require.NoError(t, byeErr)
	require.Equal(t, 200, byeRes.StatusCode)

	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition), "the ACK (or the BYE standing for it) makes the call answered")
	require.Equal(t, "caller", string(cdr.HangupBy))
	require.False(t, cdr.AnsweredAt.IsZero())
	cc.requireEnded(t)
	requireNoByeFromVnum(t, e.phone)
	e.waitNoCalls()
}

// TestRaceCancelCrosses200 releases the caller's CANCEL and the carrier's
// 200 at once (early mode: leg A's 200 follows B's), so that on leg A the
// CANCEL crosses our 200, and on leg B our CANCEL crosses B's 200. Either
// the call was answered (the caller got 200; it is then up until the
// caller's BYE) or it was cancelled (487 to the caller, and B, if it
// answered, acknowledged and hung up). Nothing is left up on either leg.
func TestRaceCancelCrosses200(t *testing.T) {
	e, sc := scriptedEnv(t, earlyMode)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	d, answered := e.earlyCall(waitCtx) // cancelWait makes WaitAnswer send CANCEL
	cc := sc.next(t)
	gate := make(chan struct{})
	cc.answerWith(gate, sc.SDP(sipua.PCMU))
	go func() { <-gate; cancelWait() }() // WaitAnswer sends CANCEL
	close(gate)
	err := <-answered

	if res := d.InviteResponse; err == nil || (res != nil && res.IsSuccess()) {
		// Our 200 won: the caller has the call. A caller whose CANCEL
		// lost acknowledges the 2xx and hangs up (RFC 3261 §9.1, §15).
		require.NoError(t, d.Ack(ctx))
		require.NoError(t, d.Bye(ctx))
		cdr := e.router.waitEnded(t)
		require.Equal(t, "answered", string(cdr.Disposition))
		require.Equal(t, "caller", string(cdr.HangupBy))
	} else {
		cdr := e.router.waitEnded(t)
		require.Equal(t, "cancelled", string(cdr.Disposition), "WaitAnswer: %v", err)
		require.Equal(t, "caller", string(cdr.HangupBy))
		require.True(t, cdr.AnsweredAt.IsZero(), "a cancelled call is not billed")
	}
	cc.requireEnded(t)
	e.waitNoCalls()
}

// TestRaceReinviteWhileRinging: the caller (answered by the IVR) puts the
// call on hold with a re-INVITE while B rings and B answers at the same
// instant. The re-INVITE is answered recvonly, B's answer is taken, and
// the call is bridged and billed.
func TestRaceReinviteWhileRinging(t *testing.T) {
	e, sc := scriptedEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	cc := sc.next(t)

	gate := make(chan struct{})
	cc.answerWith(gate, sc.SDP(sipua.PCMU))
	hold := sip.NewRequest(sip.INVITE, d.InviteResponse.Contact().Address)
	hold.SetBody([]byte(strings.Replace(string(e.phone.SDP()), "a=sendrecv", "a=sendonly", 1)))
	hold.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	var res *sip.Response
	var rerr error
	done := make(chan struct{})
	go func() { defer close(done); <-gate; res, rerr = d.Do(ctx, hold) }()
	close(gate)
	<-done
	require.NoError(t, rerr)
	require.Equal(t, 200, res.StatusCode)
	require.Contains(t, string(res.Body()), "a=recvonly", "hold is answered recvonly")
	require.NoError(t, d.WriteRequest(sip.NewRequest(sip.ACK, d.InviteResponse.Contact().Address)))

	require.Eventually(t, func() bool { return callState(e) == "bridged" }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "caller", string(cdr.HangupBy))
	cc.requireEnded(t)
	e.waitNoCalls()
}

// callState is the state /v1/calls shows for the one call in progress.
func callState(e *testEnv) string {
	calls := e.srv.Calls()
	if len(calls) != 1 {
		return ""
	}
	return calls[0].State
}

// bridged sets up a call through the scripted carrier to the bridge.
func bridged(t *testing.T, e *testEnv, sc *scriptedCarrier, ctx context.Context, answer []byte) (*sipgo.DialogClientSession, *carrierCall) {
	t.Helper()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	cc := sc.next(t)
	open := make(chan struct{})
	close(open)
	cc.answerWith(open, answer)
	<-cc.acted
	require.Eventually(t, func() bool { return callState(e) == "bridged" }, 10*time.Second, 10*time.Millisecond)
	return d, cc
}

// TestRaceReinviteGlare: the caller and the carrier re-INVITE their legs
// at the same instant (both put the call on hold). Each gets its own 200
// with SDP for its own leg, and the call stays up until a BYE.
func TestRaceReinviteGlare(t *testing.T) {
	e, sc := scriptedEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, cc := bridged(t, e, sc, ctx, sc.SDP(sipua.PCMU))

	aTarget := d.InviteResponse.Contact().Address
	bTarget := cc.req.Contact().Address
	reA := sip.NewRequest(sip.INVITE, aTarget)
	reA.SetBody([]byte(strings.Replace(string(e.phone.SDP()), "a=sendrecv", "a=sendonly", 1)))
	reA.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	reB := sip.NewRequest(sip.INVITE, bTarget)
	reB.SetBody([]byte(strings.Replace(string(sc.SDP(sipua.PCMU)), "a=sendrecv", "a=sendonly", 1)))
	reB.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))

	gate := make(chan struct{})
	var wg sync.WaitGroup
	var resA, resB *sip.Response
	var errA, errB error
	wg.Add(2)
	go func() { defer wg.Done(); <-gate; resA, errA = d.Do(ctx, reA) }()
	go func() { defer wg.Done(); <-gate; resB, errB = cc.ds.Do(ctx, reB) }()
	close(gate)
	wg.Wait()
	require.NoError(t, errA)
	require.NoError(t, errB)
	for name, res := range map[string]*sip.Response{"caller": resA, "carrier": resB} {
		require.Equal(t, 200, res.StatusCode, name)
		require.Contains(t, string(res.Body()), "a=recvonly", "%s's hold is answered recvonly", name)
	}
	require.NotContains(t, string(resA.Body()), "m=audio "+itoa(sc.RTPPort()), "the caller's answer is leg A's session")
	require.NoError(t, d.WriteRequest(sip.NewRequest(sip.ACK, aTarget)))
	require.NoError(t, cc.ds.WriteRequest(sip.NewRequest(sip.ACK, bTarget)))

	require.Equal(t, 1, e.srv.ActiveCalls(), "the call is still up")
	require.Equal(t, "bridged", callState(e))
	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "caller", string(cdr.HangupBy))
	cc.requireEnded(t)
	e.waitNoCalls()
}

// TestRaceByeFromBothSides: caller and carrier hang up at the same
// instant. Both BYEs are answered (200, or 481 for one that came after
// vnum's own BYE ended the dialog), the call ends once with one CDR,
// answered and hung up by one of them.
func TestRaceByeFromBothSides(t *testing.T) {
	e, sc := scriptedEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, cc := bridged(t, e, sc, ctx, sc.SDP(sipua.PCMU))

	gate := make(chan struct{})
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() { defer wg.Done(); <-gate; errA = d.Bye(ctx) }()
	go func() { defer wg.Done(); <-gate; errB = cc.ds.Bye(ctx) }()
	close(gate)
	wg.Wait()
	for name, err := range map[string]error{"caller": errA, "carrier": errB} {
		if err != nil {
			var dr sipgo.ErrDialogResponse
			require.ErrorAs(t, err, &dr, "%s's BYE got no answer: %v", name, err)
			require.Equal(t, 481, dr.Res.StatusCode, name)
		}
	}
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Contains(t, []string{"caller", "callee"}, string(cdr.HangupBy))
	cc.requireEnded(t)
	e.waitNoCalls()
	select {
	case again := <-e.router.ended:
		t.Fatalf("the call ended twice: %+v", again)
	default:
	}
}

// TestRaceInfoAndRFC4733SameKey: the caller keys the same digit by SIP
// INFO and by RFC 4733 at the same instant, twice, for the extension
// "1111". Every key reaches the IVR, whichever path is first, and the call
// is bridged to that binding.
func TestRaceInfoAndRFC4733SameKey(t *testing.T) {
	e, sc := scriptedEnv(t, nil)
	e.router.addBinding(Target{BindingID: "b2", Merchant: "m1", Order: "o2", Host: testHost, Extension: "1111", Consignee: testConsignee})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := e.phone.Call(ctx, e.vnum, testHost)
	require.NoError(t, err)
	to, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	target := d.InviteResponse.Contact().Address
	for i := 0; i < 2; i++ {
		gate := make(chan struct{})
		var wg sync.WaitGroup
		var res *sip.Response
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-gate
			sendKey(t, e.phone.RTP, to, 101, '1', uint32(8000+1600*i), uint16(100+10*i))
		}()
		go func() {
			defer wg.Done()
			<-gate
			info := sip.NewRequest(sip.INFO, target)
			info.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
			info.SetBody([]byte("Signal=1\r\nDuration=160\r\n"))
			res, err = d.Do(ctx, info)
		}()
		close(gate)
		wg.Wait()
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode)
	}
	cc := sc.next(t)
	open := make(chan struct{})
	close(open)
	cc.answerWith(open, sc.SDP(sipua.PCMU))
	require.Eventually(t, func() bool { return callState(e) == "bridged" }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "b2", cdr.BindingID, "four keys 1 make the extension 1111")
	require.Equal(t, "answered", string(cdr.Disposition))
	e.waitNoCalls()
}

// TestRaceForkAnswersAfterAnotherWon: a consignee's call back rings two
// registered softphones of the merchant, which answer at the same time.
// One wins and is bridged; the other, whose 200 crossed vnum's CANCEL, is
// acknowledged and hung up at once, and the CDR is the winner's.
func TestRaceForkAnswersAfterAnotherWon(t *testing.T) {
	e := newTestEnv(t, "answer", trunkFromLoopback)
	e.router.addAccount("m1", "bob", "b0bpw")
	bob, err := sipua.NewSoftphone("bob", "b0bpw", nil)
	require.NoError(t, err)
	t.Cleanup(bob.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, e.phone.Register(ctx, e.vnum))
	require.NoError(t, bob.Register(ctx, e.vnum))
	e.router.addCallback(testHost, testNational, Callback{Accounts: []string{"alice", "bob"},
		Target: Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee}})

	consignee := newConsigneePhone(t)
	d, err := consignee.Call(ctx, e.vnum, testHost)
	require.NoError(t, err)
	var answered []sipua.Incoming
	for _, p := range []*sipua.Softphone{e.phone, bob} {
		if in, err := p.NextIncoming(3 * time.Second); err == nil {
			answered = append(answered, in)
		}
	}
	require.NotEmpty(t, answered, "one of the phones answered")
	// The phones whose answer lost are hung up; the winner stays.
	require.Eventually(t, func() bool {
		up := 0
		for _, in := range answered {
			if in.Session.Context().Err() == nil {
				up++
			}
		}
		return up == 1
	}, 10*time.Second, 10*time.Millisecond, "exactly one answered fork stays up")
	require.Eventually(t, func() bool { return callState(e) == "bridged" }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, d.Bye(ctx))
	for _, in := range answered {
		select {
		case <-in.Session.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("a merchant phone was left up")
		}
	}
	cdr := e.router.waitEnded(t)
	require.Equal(t, "callback", string(cdr.Direction))
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "caller", string(cdr.HangupBy))
	e.waitNoCalls()
}

func itoa(n int) string { return strconv.Itoa(n) }

// sendKey sends one RFC 4733 key press as RTP on payload type pt: three
// updates, the first with the marker, then the end packet three times
// (RFC 4733 §2.5), all with the event's timestamp ts. It may run on a
// goroutine of the test: a failure is reported with t.Error.
func sendKey(t *testing.T, conn *net.UDPConn, to netip.AddrPort, pt uint8, key rune, ts uint32, seq uint16) {
	t.Helper()
	for i := 0; i < 6; i++ {
		ev := media.Event{Digit: key, Volume: 10, Duration: uint16(160 * (min(i, 3) + 1)), End: i >= 3}
		payload, err := media.EncodeEvent(ev)
		if err != nil {
			t.Error(err)
			return
		}
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: 0xD1D1, Marker: i == 0}, Payload: payload}
		if i < 3 {
			seq++
		}
		b, err := pkt.Marshal()
		if err == nil {
			_, err = conn.WriteToUDPAddrPort(b, to)
		}
		if err != nil {
			t.Error(err)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestInfoDigitsBeforeAck: a phone that sends its SIP INFO digits before
// it ACKs vnum's 200 (they cross on the wire) has them counted: digits
// count from the answer, and the call's goroutine took them while it still
// waited for the ACK, before the IVR's first prompt.
func TestInfoDigitsBeforeAck(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := e.phone.Invite(ctx, e.vnum, testHost)
	require.NoError(t, err)
	require.NoError(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "alice", Password: "s3cret"}))
	for _, r := range testExt {
		req := sip.NewRequest(sip.INFO, d.InviteResponse.Contact().Address)
		req.SetBody([]byte("Signal=" + string(r) + "\r\nDuration=160\r\n"))
		req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
		res, err := d.Do(ctx, req)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode)
	}
	// The ACK by hand: sipgo's Ack after in-dialog requests would carry
	// the last CSeq, not the INVITE's (RFC 3261 §13.2.2.4).
	ack := sip.NewRequest(sip.ACK, d.InviteResponse.Contact().Address)
	ack.AppendHeader(sip.HeaderClone(d.InviteRequest.From()))
	ack.AppendHeader(sip.HeaderClone(d.InviteResponse.To()))
	ack.AppendHeader(sip.HeaderClone(d.InviteRequest.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: d.InviteRequest.CSeq().SeqNo, MethodName: sip.ACK})
	ack.SetTransport(d.InviteRequest.Transport())
	require.NoError(t, e.phone.Client.WriteRequest(ack))
	inv := nextInvite(t, e.carrier)
	require.Equal(t, testNational, inv.Recipient.User, "the four INFO digits were the extension")
	require.NoError(t, nextSession(t, e.carrier).Bye(ctx), "the consignee hangs up")
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, testExt, cdr.Extension)
	e.waitNoCalls()
}
