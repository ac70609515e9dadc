//go:build linux

package media

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRTCPSharedReader: the RTCP sockets of a Ports' streams are read by
// one goroutine for all of them, which relays each stream's RTCP to its
// own peer, goes on for the others when one closes, and ends with the
// last stream.
func TestRTCPSharedReader(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	const calls = 8
	before := runtime.NumGoroutine()
	type call struct {
		a, b              *Stream
		callerRTCP, rtcpB *peer
	}
	var cs []call
	for range calls {
		c := call{callerRTCP: newPeer(t), rtcpB: newPeer(t)}
		sock, err := ports.Open()
		require.NoError(t, err)
		c.a = NewStream(sock, c.callerRTCP.addr(), pcmuCodec, event101, nil)
		sock, err = ports.Open()
		require.NoError(t, err)
		// B's RTCP remote is its SDP's RTP port + 1 until it learns one:
		// here, B's RTCP peer sends first.
		c.b = NewStream(sock, c.rtcpB.addr(), pcmuCodec, event101, nil)
		c.a.Start()
		c.b.Start()
		require.NoError(t, Relay(c.a, c.b))
		require.NoError(t, Relay(c.b, c.a))
		cs = append(cs, c)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), before+2*calls+1,
		"one RTP reader per stream and one RTCP reader for them all")

	rr := []byte{0x81, 201, 0, 7, 0, 0, 0xCA, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	relays := func(c call) {
		t.Helper()
		c.rtcpB.send(rtcpFor(c.b.Socket().RTPAddr()), rr)
		require.Eventually(t, func() bool { return c.b.RTCPRemote() == c.rtcpB.addr() }, 2*time.Second, time.Millisecond)
		c.callerRTCP.send(rtcpFor(c.a.Socket().RTPAddr()), rr)
		buf, src := c.rtcpB.recv(2 * time.Second)
		require.Equal(t, rr, buf)
		require.Equal(t, rtcpFor(c.b.Socket().RTPAddr()), src, "from B's RTCP socket")
	}
	for _, c := range cs {
		relays(c)
	}
	// Half the calls end; the others' RTCP still goes through.
	for _, c := range cs[:calls/2] {
		require.NoError(t, c.a.Close())
		require.NoError(t, c.b.Close())
	}
	for _, c := range cs[calls/2:] {
		relays(c)
	}
	for _, c := range cs[calls/2:] {
		require.NoError(t, c.a.Close())
		require.NoError(t, c.b.Close())
	}
	// The last stream closed ends the shared reader (checkNoLeaks), and a
	// new stream starts another.
	caller := newPeer(t)
	s := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
	peerRTCP := newPeer(t)
	peerRTCP.send(rtcpFor(s.Socket().RTPAddr()), rr)
	require.Eventually(t, func() bool { return s.RTCPRemote() == peerRTCP.addr() }, 2*time.Second, time.Millisecond,
		"a stream after the last one closed has its RTCP read")
}
