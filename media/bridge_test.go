package media

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// startBridge runs Bridge(a, b) until the test ends and waits until both
// directions relay.
func startBridge(t testing.TB, a, b *Stream) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Bridge(ctx, a, b) }()
	require.Eventually(t, func() bool { return a.bridged() && b.bridged() }, 2*time.Second, time.Millisecond, "bridge did not come up")
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-errc
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestBridge(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	callerRTCP, calleeRTCP := newPeer(t), newPeer(t)

	// Leg A was signalled at an address the caller's NAT does not use;
	// leg B negotiated telephone-event 96 where leg A has 101.
	a := newTestStream(t, ports, netip.MustParseAddrPort("127.0.0.1:9"), pcmuCodec, event101)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, event96)
	stop := startBridge(t, a, b)
	require.ErrorIs(t, Bridge(context.Background(), a, b), ErrBridged)
	require.ErrorIs(t, a.Play(context.Background(), make([]int16, frameSamples)), ErrBridged)

	// Caller → A → B → callee: audio unchanged, events 101 → 96.
	audio := &rtp.Packet{
		Header:  rtp.Header{Version: 2, Marker: true, PayloadType: 0, SequenceNumber: 7, Timestamp: 160, SSRC: 0xCA11},
		Payload: EncodeULaw(DTMFTone('1', 20*time.Millisecond)),
	}
	caller.sendRTP(a.Socket().RTPAddr(), audio)
	got := callee.recvRTP(time.Second)
	require.Equal(t, audio.Header.SSRC, got.SSRC)
	require.Equal(t, audio.Payload, got.Payload)
	require.Equal(t, uint8(0), got.PayloadType)
	require.True(t, got.Marker)

	caller.sendRTP(a.Socket().RTPAddr(), eventPacket(t, '5', 101, 320, 8, true, false))
	got = callee.recvRTP(time.Second)
	require.Equal(t, uint8(96), got.PayloadType, "telephone-event rewritten to leg B's type")
	require.True(t, got.Marker, "marker kept")
	e, err := DecodeEvent(got.Payload)
	require.NoError(t, err)
	require.Equal(t, '5', e.Digit)

	// Other payload types pass unchanged.
	caller.sendRTP(a.Socket().RTPAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 13}, Payload: []byte{40}})
	require.Equal(t, uint8(13), callee.recvRTP(time.Second).PayloadType)

	// A latched to the caller's real address: the callee's packets reach it,
	// from A's port, with the caller's event type.
	require.Equal(t, caller.addr(), a.Remote())
	callee.sendRTP(b.Socket().RTPAddr(), eventPacket(t, '#', 96, 640, 1, true, true))
	buf, src := caller.recv(time.Second)
	require.NotNil(t, buf)
	require.Equal(t, a.Socket().RTPAddr(), src, "sent from leg A's socket")
	var back rtp.Packet
	require.NoError(t, back.Unmarshal(buf))
	require.Equal(t, uint8(101), back.PayloadType)

	// RTCP is relayed between the RTCP sockets, latched the same way.
	rr := []byte{0x81, 201, 0, 7, 0, 0, 0xCA, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	calleeRTCP.send(rtcpFor(b.Socket().RTPAddr()), rr)
	require.Eventually(t, func() bool { return b.RTCPRemote() == calleeRTCP.addr() }, time.Second, time.Millisecond)
	callerRTCP.send(rtcpFor(a.Socket().RTPAddr()), rr)
	buf, src = calleeRTCP.recv(time.Second)
	require.Equal(t, rr, buf)
	require.Equal(t, rtcpFor(b.Socket().RTPAddr()), src)
	callerRTCP.send(rtcpFor(a.Socket().RTPAddr()), []byte{0x81, 201, 0}) // junk is dropped
	calleeRTCP.send(rtcpFor(b.Socket().RTPAddr()), rr)
	buf, _ = callerRTCP.recv(time.Second)
	require.Equal(t, rr, buf)

	// Digits are not collected while bridged.
	require.Empty(t, a.Digits())

	// After the bridge ends nothing is relayed and the streams still work.
	require.NoError(t, stop())
	require.False(t, a.bridged())
	caller.sendRTP(a.Socket().RTPAddr(), audio)
	junk, _ := callee.recv(100 * time.Millisecond)
	require.Nil(t, junk)
	require.NoError(t, a.Play(context.Background(), make([]int16, frameSamples)))
	require.NotNil(t, caller.recvRTP(time.Second))
}

func TestBridgeTranscodes(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
	b := newTestStream(t, ports, callee.addr(), Codec{PT: 8, Name: "pcma", Rate: 8000}, nil)
	startBridge(t, a, b)

	pcm := DTMFTone('9', 20*time.Millisecond)
	caller.sendRTP(a.Socket().RTPAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0}, Payload: EncodeULaw(pcm)})
	got := callee.recvRTP(time.Second)
	require.Equal(t, uint8(8), got.PayloadType)
	want := EncodeULaw(pcm)
	transcode(want, &ulawToALaw)
	require.Equal(t, want, got.Payload)

	callee.sendRTP(b.Socket().RTPAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8}, Payload: EncodeALaw(pcm)})
	got = caller.recvRTP(time.Second)
	require.Equal(t, uint8(0), got.PayloadType)
}

func TestBridgeEnds(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller := newPeer(t)

	sock, err := ports.Open()
	require.NoError(t, err)
	idle := NewStream(sock, caller.addr(), pcmuCodec, nil, nil)
	t.Cleanup(func() { idle.Close() })
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
	require.ErrorIs(t, Bridge(context.Background(), a, idle), ErrNotStarted)
	require.ErrorIs(t, Bridge(context.Background(), a, a), ErrBridgeStreams)
	require.ErrorIs(t, Bridge(context.Background(), a, nil), ErrBridgeStreams)
	require.False(t, a.bridged(), "a failed bridge leaves no half")

	// Closing either stream ends the bridge.
	b := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
	done := make(chan error, 1)
	go func() { done <- Bridge(context.Background(), a, b) }()
	require.Eventually(t, func() bool { return a.bridged() && b.bridged() }, 2*time.Second, time.Millisecond, "bridge did not come up")
	require.NoError(t, b.Close())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("bridge did not end when a stream closed")
	}
	require.ErrorIs(t, Bridge(context.Background(), a, b), ErrClosed)
}

// BenchmarkRelay measures RTP packets per second through a Bridge on
// loopback: sender → stream A → stream B → receiver, in windows of 32
// packets so that the socket buffers never overflow.
func BenchmarkRelay(bm *testing.B) { benchmarkRelay(bm, "", "") }

// benchmarkRelay is BenchmarkRelay with the streams measured as legs
// legA and legB ("": not measured; media/kpi.go).
func benchmarkRelay(bm *testing.B, legA, legB string) {
	ports := newTestPorts(bm)
	sender, receiver := newPeer(bm), newPeer(bm)
	a := newLegStream(bm, ports, legA, sender.addr(), pcmuCodec, event101)
	b := newLegStream(bm, ports, legB, receiver.addr(), pcmuCodec, event96)
	startBridge(bm, a, b)

	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 1}, Payload: make([]byte, frameSamples)}
	raw, err := pkt.Marshal()
	require.NoError(bm, err)
	to := a.Socket().RTPAddr()
	buf := make([]byte, maxPacket)
	const window = 32
	bm.ReportAllocs()
	bm.ResetTimer()
	start := time.Now()
	lost := 0
	for i := 0; i < bm.N; i += window {
		n := min(window, bm.N-i)
		for j := range n {
			seq := uint16(i + j) // in order, as a phone sends them
			raw[2], raw[3] = byte(seq>>8), byte(seq)
			if _, err := sender.conn.WriteToUDPAddrPort(raw, to); err != nil {
				bm.Fatal(err)
			}
		}
		for range n {
			_ = receiver.conn.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := receiver.conn.ReadFromUDPAddrPort(buf); err != nil {
				lost++
			}
		}
	}
	bm.ReportMetric(float64(bm.N)/time.Since(start).Seconds(), "pkts/s")
	bm.ReportMetric(float64(lost), "lost")
}
