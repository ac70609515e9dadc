package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// TestLegsEndedAfterCrash: a bridged call's legs are kept with its record
// (both once B answered), and a server that dies without a word (its
// sockets closed, no BYE sent) leaves them up; another server, as the
// node's next start, sends a BYE in each kept dialog: the carrier's leg
// and the caller's leg end, each with the right dialog, and neither peer
// learns the other's identity. A second round finds nothing up (481).
func TestLegsEndedAfterCrash(t *testing.T) {
	t.Parallel()
	var opts Options
	e := newTestEnv(t, "answer", func(o *Options) { opts = *o })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	legB := nextSession(t, e.carrier)
	e.waitState(StateBridged)
	id := e.srv.Calls()[0].ID
	var legs Legs
	require.Eventually(t, func() bool {
		legs = e.router.keptLegs(id)
		return legs.A != "" && legs.B != ""
	}, 5*time.Second, 10*time.Millisecond, "the answered legs' dialogs are kept with the record")
	require.Contains(t, legs.B, testNational, "leg B's dialog names B: it is kept, never shown")

	// The crash: the sockets go, nobody says BYE.
	e.srv.Close()
	select {
	case <-legB.Context().Done():
		t.Fatal("leg B ended without a BYE")
	case <-d.Context().Done():
		t.Fatal("leg A ended without a BYE")
	case <-time.After(300 * time.Millisecond):
	}

	// The node's next start.
	logs := &lockedBuffer{}
	opts.Listen = []string{"udp://127.0.0.1:0"}
	opts.Logger = testLogger(logs)
	next, err := NewServer(opts, newFakeRouter())
	require.NoError(t, err)
	nextCtx, stop := context.WithCancel(context.Background())
	require.NoError(t, next.Start(nextCtx))
	t.Cleanup(func() {
		next.Shutdown(context.Background())
		stop()
	})
	got := next.EndLegs(ctx, map[string]Legs{id: legs})
	require.Equal(t, LegsEnded{Legs: 2, Ended: 2}, got)
	for name, done := range map[string]<-chan struct{}{"leg B": legB.Context().Done(), "leg A": d.Context().Done()} {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s is still up after the BYE", name)
		}
	}
	byes := func(msgs []string, callID string) int {
		n := 0
		for _, m := range msgs {
			if strings.HasPrefix(m, "BYE ") && strings.Contains(m, callID) {
				n++
			}
		}
		return n
	}
	require.Equal(t, 1, byes(e.carrier.Received(), id), "one BYE in leg B's dialog (Call-ID: the call id)")
	require.Equal(t, 1, byes(e.phone.Received(), d.InviteRequest.CallID().Value()), "one BYE in leg A's dialog")
	assertPrivate(t, e.phone, e.carrier, d.InviteRequest.CallID().Value(), fromTag(d.InviteRequest))
	require.Contains(t, logs.String(), "ended the legs of interrupted calls")
	require.NotContains(t, logs.String(), testNational, "B's number in the info log")

	// Nothing is left up: a second BYE finds no dialog.
	require.Equal(t, LegsEnded{Legs: 2, Gone: 2}, next.EndLegs(ctx, map[string]Legs{id: legs}))
}

// TestKeptDialogRefusesBadText: a kept dialog that does not read, lacks a
// tag, or names no address sends nothing; EndLegs counts it failed.
func TestKeptDialogRefusesBadText(t *testing.T) {
	t.Parallel()
	good := keptDialog{CallID: "c1", From: "<sip:17000000001@10.0.0.1>;tag=a", To: "<sip:13800138000@10.0.0.2>;tag=b",
		Target: "sip:13800138000@10.0.0.2:5060", CSeq: 2, Transport: "UDP", Dest: "10.0.0.2:5060"}
	text, err := good.text()
	require.NoError(t, err)
	req, err := bye(text)
	require.NoError(t, err)
	require.Equal(t, "10.0.0.2:5060", req.Destination())
	require.Equal(t, uint32(2), req.CSeq().SeqNo)
	require.Equal(t, "BYE", string(req.CSeq().MethodName))

	routed := good
	routed.Route = []string{"<sip:10.0.0.9:5070;lr>", "<sip:10.0.0.8;lr>"}
	text, err = routed.text()
	require.NoError(t, err)
	req, err = bye(text)
	require.NoError(t, err)
	require.Equal(t, "10.0.0.9:5070", req.Destination(), "to the first route")
	require.Len(t, req.GetHeaders("Route"), 2)

	tcp := good
	tcp.Transport, tcp.Dest, tcp.Target = "TCP", "10.0.0.2:40123", "sip:13800138000@10.0.0.2:5090;transport=tcp"
	text, err = tcp.text()
	require.NoError(t, err)
	req, err = bye(text)
	require.NoError(t, err)
	require.Equal(t, "10.0.0.2:5090", req.Destination(), "a new connection goes where the peer listens")

	for name, k := range map[string]keptDialog{
		"no tag":     {CallID: "c1", From: "<sip:x@10.0.0.1>", To: good.To, Target: good.Target, Transport: "UDP", Dest: good.Dest},
		"a name":     {CallID: "c1", From: good.From, To: good.To, Target: good.Target, Transport: "UDP", Dest: "carrier.example:5060"},
		"no call id": {From: good.From, To: good.To, Target: good.Target, Transport: "UDP", Dest: good.Dest},
	} {
		text, err := k.text()
		require.NoError(t, err)
		_, err = bye(text)
		require.Error(t, err, name)
	}
	_, err = bye("{not json")
	require.Error(t, err)
}

// TestLegAKeptOnceAnswered: an IVR call is answered before B rings, and
// its leg A is kept from the first write after that (the binding
// resolved); leg B only once B answered.
func TestLegAKeptOnceAnswered(t *testing.T) {
	t.Parallel()
	e := newTestEnvWith(t, sipua.CarrierOptions{Mode: "ring"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	_, err := e.carrier.NextRinging(10 * time.Second)
	require.NoError(t, err)
	id := e.srv.Calls()[0].ID
	legs := e.router.keptLegs(id)
	require.NotEmpty(t, legs.A, "leg A answered (IVR) and written with the binding")
	require.Empty(t, legs.B, "B rings, not answered")
	require.NoError(t, d.Bye(ctx))
	e.router.waitEnded(t)
	require.Equal(t, Legs{}, e.router.keptLegs(id))
}
