package integration

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// fakeNode stands for a vnum node behind the dispatcher: it answers every
// INVITE 100 Trying at once, as vnum does, then the final status final
// returns, and counts the INVITEs it got.
type fakeNode struct {
	port    int
	invites atomic.Int64
	final   atomic.Pointer[sip.Response]
}

// startFakeNode serves a fakeNode on a port of the test's own; final
// builds its final answer to a request.
func startFakeNode(t *testing.T, final func(req *sip.Request) *sip.Response) *fakeNode {
	t.Helper()
	n := &fakeNode{port: freePort(t)}
	letGo(n.port)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("vnum-itest-node"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ua.Close() })
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		n.invites.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil))
		_ = tx.Respond(final(req))
		select {
		case <-tx.Acks():
		case <-tx.Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(n.port))))
	require.NoError(t, err)
	go func() { _ = srv.ServeUDP(conn) }()
	t.Cleanup(func() { _ = conn.Close() })
	return n
}

// TestDispatcherFailsOverOnlyForTheNode: the dispatcher tries the next node
// when a node refuses an INVITE for itself (vnum's 503 while draining or
// overloaded, which carries no Reason), but not when the node ran the call
// and the carrier failed it (a 5xx with a Reason header and its Q.850
// cause): that is the call's own answer, and another node would only ring
// the consignee's carrier again. Both nodes answer 100 Trying at once, as
// vnum does.
func TestDispatcherFailsOverOnlyForTheNode(t *testing.T) {
	t.Parallel()
	bin := requireKamailio(t)
	var withReason atomic.Bool
	withReason.Store(true)
	refusing := startFakeNode(t, func(req *sip.Request) *sip.Response {
		res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
		if withReason.Load() {
			res.AppendHeader(sip.NewHeader("Reason", `Q.850;cause=38;text="Network out of order"`))
		} else {
			res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		}
		return res
	})
	busy := startFakeNode(t, func(req *sip.Request) *sip.Response {
		return sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil)
	})
	// Round robin starts at the first node of the list.
	k := startKamailio(t, bin, &clusterNode{env: &env{sipPort: refusing.port}}, &clusterNode{env: &env{sipPort: busy.port}})

	ua, err := sipgo.NewUA(sipgo.WithUserAgent("vnum-itest-trunk"))
	require.NoError(t, err)
	defer ua.Close()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(t, err)
	defer client.Close()
	call := func() *sip.Response {
		t.Helper()
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: hostNumber + "-1234", Host: "127.0.0.1", Port: k.port})
		req.SetTransport("UDP")
		req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: pstnCaller, Host: "127.0.0.1"}})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		res, err := client.Do(ctx, req)
		require.NoError(t, err)
		return res
	}

	// The carrier failed the call on the node that took it: the caller
	// gets the node's answer, and no other node is tried.
	for refusing.invites.Load() == 0 {
		busyBefore := busy.invites.Load()
		res := call()
		if refusing.invites.Load() == 0 {
			require.Equal(t, 486, res.StatusCode, "round robin reached the other node first")
			continue
		}
		// A proxy passes a 503 on as a 500 of its own (RFC 3261 §16.7).
		require.Equal(t, 500, res.StatusCode, res.StartLine())
		require.Equal(t, busyBefore, busy.invites.Load(), "a 5xx with a Reason is not failed over")
	}

	// The node refuses for itself (no Reason): the call goes to the next.
	withReason.Store(false)
	for n := refusing.invites.Load(); refusing.invites.Load() == n; {
		busyBefore := busy.invites.Load()
		res := call()
		require.Equal(t, 486, res.StatusCode, "the busy node answers, first or after the failover: %s", res.StartLine())
		if refusing.invites.Load() > n {
			require.Equal(t, busyBefore+1, busy.invites.Load(), "failed over to the next node")
		}
	}
}
