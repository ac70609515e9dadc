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

// TestRTCPStaysInSetBetweenCalls: a released pair's RTCP socket stays in
// the shared reader's set while its pair is idle, so that the pair's next
// call takes its place there without a system call, and its RTP socket
// joins the set until then; what reaches the idle sockets is read and
// dropped, never handed to the next call; closing the idle pairs takes
// the sockets out, and the reader ends with them.
func TestRTCPStaysInSetBetweenCalls(t *testing.T) {
	ports, _ := rangePorts(t, 1)
	ports.drain = 0
	rr := []byte{0x81, 201, 0, 7, 0, 0, 0xCA, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	set := func() (streams, idle int) {
		ports.rtcp.mu.Lock()
		defer ports.rtcp.mu.Unlock()
		if ports.rtcp.cur == nil {
			return -1, -1
		}
		return len(ports.rtcp.cur.streams), len(ports.rtcp.cur.idle)
	}

	peerRTCP := newPeer(t)
	s := NewStream(mustOpen(t, ports), newPeer(t).addr(), pcmuCodec, nil, nil)
	s.Start()
	reg := s.Socket().rtcpReg
	require.NotNil(t, reg)
	peerRTCP.send(rtcpFor(s.Socket().RTPAddr()), rr)
	require.Eventually(t, func() bool { return s.RTCPRemote() == peerRTCP.addr() }, 2*time.Second, time.Millisecond)
	require.NoError(t, s.Close())
	streams, idle := set()
	require.Equal(t, 0, streams)
	require.Equal(t, 2, idle, "the idle pair's RTCP socket stays in the set, its RTP socket joins it")

	// Sent to the idle sockets: the set reads it and drops it.
	stranger := newPeer(t)
	stranger.send(rtcpFor(s.Socket().RTPAddr()), rr)
	stranger.send(s.Socket().RTPAddr(), rr)
	waitEmptied(t, s.Socket().RTCP, "the set read what came to the idle RTCP socket")
	waitEmptied(t, s.Socket().RTP, "the set read what came to the idle RTP socket")

	// The pair's next call: the same place in the set, its RTCP read, the
	// stranger's packet not among it.
	s2 := NewStream(mustOpen(t, ports), newPeer(t).addr(), pcmuCodec, nil, nil)
	s2.Start()
	require.Same(t, reg, s2.Socket().rtcpReg, "the same place in the set")
	streams, idle = set()
	require.Equal(t, 1, streams)
	require.Equal(t, 0, idle)
	peer2 := newPeer(t)
	peer2.send(rtcpFor(s2.Socket().RTPAddr()), rr)
	require.Eventually(t, func() bool { return s2.RTCPRemote() == peer2.addr() }, 2*time.Second, time.Millisecond,
		"the next call's RTCP is read")
	require.NoError(t, s2.Close())

	// The idle pairs closed: out of the set, which ends.
	ports.CloseIdle()
	streams, idle = set()
	require.Equal(t, -1, streams, "no set left")
	require.Equal(t, -1, idle)
}

func mustOpen(t *testing.T, ports *Ports) *Socket {
	t.Helper()
	s, err := ports.Open()
	require.NoError(t, err)
	return s
}

// TestRTCPSocketClosedBeforeStream: a pair closed while its stream still
// runs (Socket.Close before Stream.Close) has what reaches its RTCP
// socket dropped by the shared reader, not reported again and again (the
// socket's reads fail at their past deadline); and once the stream is
// closed and the idle pair too, the set holds nothing and ends.
func TestRTCPSocketClosedBeforeStream(t *testing.T) {
	ports, _ := rangePorts(t, 1)
	ports.drain = 0
	s := NewStream(mustOpen(t, ports), newPeer(t).addr(), pcmuCodec, nil, nil)
	s.Start()
	require.NoError(t, s.Socket().Close())
	rr := []byte{0x81, 201, 0, 7, 0, 0, 0xCA, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	newPeer(t).send(rtcpFor(s.Socket().RTPAddr()), rr)
	waitEmptied(t, s.Socket().RTCP, "the reader dropped it")
	require.NoError(t, s.Close())
	ports.CloseIdle()
	ports.rtcp.mu.Lock()
	defer ports.rtcp.mu.Unlock()
	require.Nil(t, ports.rtcp.cur, "the set ended with its last socket")
}
