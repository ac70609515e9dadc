package sip

import (
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// TestEndedTransactionsLetGoOfTheirMessages: both INVITE transactions of a
// call, once its 2xx went through them, wait in timer L (the server's) and
// timer M (the client's) for 64*T1; the dialog layer ends them at the
// call's BYE. From then on nothing may keep their messages: sipgo v1.7.3
// left those two timers running, and their callbacks kept every ended
// call's INVITEs and responses in memory for 32 s more (some 17 KB a
// call, hundreds of MB at a high call rate, for the collector to mark
// again and again). third_party/sipgo stops them (its PATCHES.md).
func TestEndedTransactionsLetGoOfTheirMessages(t *testing.T) {
	t.Parallel()
	// Real sockets on loopback: the transactions send their INVITE and
	// 200 to a peer that reads nothing back.
	local, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = local.Close() })
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = peer.Close() })
	conn := &sip.UDPConnection{PacketConn: local, PacketAddr: local.LocalAddr().String(), Listener: true}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	require.Greater(t, sip.Timer_L, 10*time.Second, "the test needs timers L and M longer than its wait")
	require.Greater(t, sip.Timer_M, 10*time.Second)

	server, client := endedTransactions(t, conn, log, peer.LocalAddr().String())
	deadline := time.Now().Add(5 * time.Second)
	for (server.Value() != nil || client.Value() != nil) && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	require.Nil(t, server.Value(), "the INVITE of a server transaction ended after its 2xx is still kept (timer L)")
	require.Nil(t, client.Value(), "the INVITE of a client transaction ended after its 2xx is still kept (timer M)")
}

// endedTransactions runs an INVITE server transaction and an INVITE
// client transaction to their 2xx (timer L and timer M running), ends
// both as a call's BYE does, and returns weak pointers to their INVITEs:
// nothing of the test keeps them.
func endedTransactions(t *testing.T, conn sip.Connection, log *slog.Logger, peer string) (server, client weak.Pointer[sip.Request]) {
	t.Helper()
	invite := func(branch string) *sip.Request {
		msg, err := sip.NewParser().ParseSIP([]byte("INVITE sip:17000000001-1234@127.0.0.1 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + peer + ";branch=z9hG4bK" + branch + "\r\n" +
			"From: <sip:13900139000@127.0.0.1>;tag=a1\r\n" +
			"To: <sip:17000000001-1234@127.0.0.1>\r\n" +
			"Call-ID: " + branch + "@127.0.0.1\r\n" +
			"CSeq: 1 INVITE\r\n" +
			"Contact: <sip:13900139000@" + peer + ">\r\n" +
			"Max-Forwards: 70\r\n" +
			"Content-Length: 0\r\n\r\n"))
		require.NoError(t, err)
		req := msg.(*sip.Request)
		req.SetSource(peer)
		req.SetDestination(peer)
		return req
	}

	// Leg A's side: the INVITE answered 200, the transaction accepted.
	in := invite("srv1")
	key, err := sip.ServerTxKeyMake(in)
	require.NoError(t, err)
	stx := sip.NewServerTx(key, in, conn, log)
	require.NoError(t, stx.Init())
	require.NoError(t, stx.Respond(sip.NewResponseFromRequest(in, sip.StatusOK, "OK", nil)))
	stx.Terminate()
	<-stx.Done()

	// Leg B's side: the INVITE sent, its 200 received, then ended.
	out := invite("cli1")
	key, err = sip.ClientTxKeyMake(out)
	require.NoError(t, err)
	ctx := sip.NewClientTx(key, out, conn, log)
	require.NoError(t, ctx.Init())
	ok := sip.NewResponseFromRequest(out, sip.StatusOK, "OK", nil)
	go ctx.Receive(ok)
	select {
	case <-ctx.Responses():
	case <-time.After(5 * time.Second):
		t.Fatal("the client transaction passed no 200 up")
	}
	ctx.Terminate()
	<-ctx.Done()
	return weak.Make(in), weak.Make(out)
}
