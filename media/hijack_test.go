package media

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// testClock is a clock the test moves by hand (Ports.SetClock).
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Unix(1_000_000, 0).UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newPeerAt is newPeer on another loopback address: a host of its own.
func newPeerAt(t testing.TB, ip string) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c}
}

// clockedPorts is newTestPorts with the test's clock.
func clockedPorts(t *testing.T) (*Ports, *testClock) {
	t.Helper()
	ports := newTestPorts(t)
	clock := newTestClock()
	ports.SetClock(clock.Now)
	checkNoLeaks(t, ports)
	return ports, clock
}

const attackerSSRC = 0xBAD

func ssrcPacket(ssrc uint32, seq uint16) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, SSRC: ssrc}, Payload: make([]byte, frameSamples)}
}

// recvSSRC reads packets until one of ssrc arrives, counting on the way
// those of attackerSSRC.
func recvSSRC(t *testing.T, p *peer, ssrc uint32) (attackers int) {
	t.Helper()
	for {
		got := p.recvRTP(2 * time.Second)
		if got.SSRC == ssrc {
			return attackers
		}
		if got.SSRC == attackerSSRC {
			attackers++
		}
	}
}

// requireForeign waits until the pool has dropped n RTP packets from
// foreign sources: the sign that the attacker's packets were handled.
func requireForeign(t *testing.T, ports *Ports, n uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return ports.RelayCounts().Dropped[DropForeignSource] >= n },
		2*time.Second, time.Millisecond, "want %d foreign drops, have %+v", n, ports.RelayCounts())
	require.Equal(t, n, ports.RelayCounts().Dropped[DropForeignSource])
}

// requireNothing: nothing is waiting on p's socket. Called once the
// packets that would have come have been seen to reach the other side.
func requireNothing(t *testing.T, p *peer, what string) {
	t.Helper()
	b, _ := p.recv(50 * time.Millisecond)
	require.Nil(t, b, what)
}

// TestHijackRTP plays the RTP bleed attack against a bridged call on real
// loopback sockets: an attacker on a host of its own sends RTP to the
// caller's relay port before the caller's first packet, while the caller
// talks, and after the caller has been silent for longer than the old
// re-latching delay. From the caller's first packet on, the callee hears
// none of it and the attacker hears none of the callee; each packet is
// counted as a foreign source.
func TestHijackRTP(t *testing.T) {
	ports, clock := clockedPorts(t)
	caller, callee := newPeer(t), newPeer(t)
	attacker := newPeerAt(t, "127.0.0.2")
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
	startBridge(t, a, b)

	// The attacker sends first, and keeps at it for longer than the
	// window: it is taken for a peer behind NAT until the caller speaks.
	attacker.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, 1))
	clock.Advance(LearnWindow + time.Second)
	attacker.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, 2))
	require.Equal(t, 2, recvSSRCCount(t, callee, attackerSSRC, 2), "before any packet of the caller the attacker passes for it")

	// The caller's first packet comes from the address its SDP names: the
	// stream is the caller's from here on, window or not.
	caller.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0xCA11, 1))
	require.Zero(t, recvSSRC(t, callee, 0xCA11))
	require.Equal(t, caller.addr(), a.Remote())

	// While the caller talks.
	for i := range 5 {
		attacker.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, uint16(10+i)))
		caller.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0xCA11, uint16(10+i)))
		require.Zero(t, recvSSRC(t, callee, 0xCA11), "the callee hears the caller and never the attacker")
	}
	requireForeign(t, ports, 5)

	// After the caller has been silent for long (the old code re-latched
	// to whoever sent next after 2 s of silence).
	clock.Advance(10 * LearnWindow)
	for i := range 5 {
		attacker.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, uint16(20+i)))
	}
	requireForeign(t, ports, 10)
	require.Equal(t, caller.addr(), a.Remote(), "the attacker did not move the stream")
	// The callee talks: the caller hears it, the attacker nothing.
	callee.sendRTP(b.Socket().RTPAddr(), ssrcPacket(0xCA1E, 1))
	require.Zero(t, recvSSRC(t, caller, 0xCA1E))
	requireNothing(t, attacker, "the attacker hears nothing of the callee")
	requireNothing(t, callee, "nothing of the attacker reached the callee")
	require.EqualValues(t, 0, ports.RelayCounts().ForeignRTCP)
}

// recvSSRCCount reads until n packets of ssrc arrived and returns n, or
// fails.
func recvSSRCCount(t *testing.T, p *peer, ssrc uint32, n int) int {
	t.Helper()
	got := 0
	for got < n {
		if p.recvRTP(2*time.Second).SSRC == ssrc {
			got++
		}
	}
	return got
}

// TestHijackAtCallee: the same at the callee's relay port, RTP and RTCP:
// the attacker's packets there neither reach the caller nor draw the
// caller's audio, and the RTCP ones are counted too.
func TestHijackAtCallee(t *testing.T) {
	ports, clock := clockedPorts(t)
	caller, callee := newPeer(t), newPeer(t)
	attacker := newPeerAt(t, "127.0.0.2")
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
	startBridge(t, a, b)
	callee.sendRTP(b.Socket().RTPAddr(), ssrcPacket(0xCA1E, 1))
	require.Zero(t, recvSSRC(t, caller, 0xCA1E))

	rr := []byte{0x81, 201, 0, 7, 0, 0, 0x0B, 0xAD, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	for _, after := range []time.Duration{0, 10 * LearnWindow} {
		clock.Advance(after)
		attacker.sendRTP(b.Socket().RTPAddr(), ssrcPacket(attackerSSRC, 1))
		attacker.send(rtcpFor(b.Socket().RTPAddr()), rr)
	}
	requireForeign(t, ports, 2)
	require.Eventually(t, func() bool { return ports.RelayCounts().ForeignRTCP == 2 }, 2*time.Second, time.Millisecond,
		"the attacker's RTCP is dropped and counted: %+v", ports.RelayCounts())
	caller.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0xCA11, 1))
	require.Zero(t, recvSSRC(t, callee, 0xCA11))
	requireNothing(t, attacker, "the attacker hears nothing of the caller")
	requireNothing(t, caller, "nothing of the attacker reached the caller")
	require.Equal(t, callee.addr(), b.Remote())
	require.Equal(t, rtcpFor(callee.addr()), b.RTCPRemote(), "RTCP still goes to the callee")
}

// TestRTCPBeforeRTP: a stranger's RTCP that comes to a bridged leg before
// its peer's first RTP packet, inside the learning window, is not taken
// (RTCP is never learnt from a host nobody named): it is dropped and
// counted and does not reach the other party, and the peer's own RTCP,
// from the SDP's host, still is relayed.
func TestRTCPBeforeRTP(t *testing.T) {
	ports, _ := clockedPorts(t)
	caller, callee := newPeer(t), newPeer(t)
	callerRTCP := newPeerAt(t, "127.0.0.1")
	attacker := newPeerAt(t, "127.0.0.2")
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
	startBridge(t, a, b)
	// The caller's RTCP goes to the port it comes from, once learnt.
	callerRTCP.send(rtcpFor(a.Socket().RTPAddr()), rtcpRR)
	require.Eventually(t, func() bool { return a.RTCPRemote() == callerRTCP.addr() }, time.Second, time.Millisecond)

	rr := []byte{0x81, 201, 0, 7, 0, 0, 0x0B, 0xAD, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	attacker.send(rtcpFor(b.Socket().RTPAddr()), rr)
	require.Eventually(t, func() bool { return ports.RelayCounts().ForeignRTCP == 1 }, 2*time.Second, time.Millisecond,
		"the stranger's RTCP is dropped and counted: %+v", ports.RelayCounts())
	requireNothing(t, callerRTCP, "the stranger's RTCP did not reach the caller")
	require.Equal(t, rtcpFor(callee.addr()), b.RTCPRemote(), "RTCP still goes to the callee")

	// The callee's own report, from the SDP's host, is relayed.
	calleeRTCP := newPeerAt(t, "127.0.0.1")
	calleeRTCP.send(rtcpFor(b.Socket().RTPAddr()), rtcpRR)
	got, _ := callerRTCP.recv(time.Second)
	require.NotNil(t, got, "the callee's RTCP reaches the caller")
}

// TestForeignSourceIsNoInput: before the bridge a stream's packets are
// IVR input; a foreign source's digits are not collected, and its packets
// do not count as the call's media (LastRTP) either.
func TestForeignSourceIsNoInput(t *testing.T) {
	ports, clock := clockedPorts(t)
	caller := newPeer(t)
	attacker := newPeerAt(t, "127.0.0.2")
	s := newTestStream(t, ports, caller.addr(), pcmuCodec, event101)
	key := sippEvent(t, '1', 1000, 1)
	for i, p := range key {
		p.PayloadType = 101
		p.SequenceNumber += uint16(i)
		caller.sendRTP(s.Socket().RTPAddr(), p)
	}
	select {
	case k := <-s.Digits():
		require.Equal(t, '1', k)
	case <-time.After(2 * time.Second):
		t.Fatal("the caller's key was not collected")
	}
	require.Eventually(t, func() bool { return ports.RelayCounts().Received == uint64(len(key)) },
		2*time.Second, time.Millisecond, "the key's last packets are read")
	heard := s.LastRTP()

	clock.Advance(time.Minute)
	for i, p := range sippEvent(t, '9', 5000, 20) {
		p.PayloadType = 101
		p.SequenceNumber += uint16(i)
		attacker.sendRTP(s.Socket().RTPAddr(), p)
	}
	requireForeign(t, ports, uint64(len(sippEvent(t, '9', 5000, 20))))
	require.Empty(t, s.Digits(), "the attacker keyed nothing")
	require.Equal(t, heard, s.LastRTP(), "the attacker's packets are not the call's media")
}

// TestLatchBehindNAT: a caller whose packets come from another host than
// its SDP names (its NAT) is learnt in the window and hears the callee; an
// attacker, in the window or after it, is not taken.
func TestLatchBehindNAT(t *testing.T) {
	ports, clock := clockedPorts(t)
	callerNAT, callerRTCP := newPeerAt(t, "127.0.0.3"), newPeerAt(t, "127.0.0.3")
	callee := newPeer(t)
	attacker := newPeerAt(t, "127.0.0.2")
	signalled := netip.MustParseAddrPort("10.1.2.3:4000") // the phone's own address, unreachable
	a := newTestStream(t, ports, signalled, pcmuCodec, nil)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
	startBridge(t, a, b)

	callerNAT.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0xCA11, 1))
	require.Zero(t, recvSSRC(t, callee, 0xCA11))
	require.Equal(t, callerNAT.addr(), a.Remote())
	require.Equal(t, rtcpFor(callerNAT.addr()), a.RTCPRemote(), "RTCP follows RTP's source")

	attacker.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, 1)) // in the window
	clock.Advance(LearnWindow)
	attacker.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, 2)) // after it
	requireForeign(t, ports, 2)
	callerNAT.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0xCA11, 2))
	require.Zero(t, recvSSRC(t, callee, 0xCA11), "the NAT'd caller still reaches the callee, the attacker not")
	callee.sendRTP(b.Socket().RTPAddr(), ssrcPacket(0xCA1E, 1))
	require.Zero(t, recvSSRC(t, callerNAT, 0xCA1E), "the callee reaches the caller behind NAT")
	requireNothing(t, attacker, "the attacker hears nothing")

	// The caller's RTCP comes from its NAT's host on a port of its own:
	// learnt; the attacker's RTCP is not.
	rr := []byte{0x81, 201, 0, 7, 0, 0, 0xCA, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	attacker.send(rtcpFor(a.Socket().RTPAddr()), rr)
	require.Eventually(t, func() bool { return ports.RelayCounts().ForeignRTCP == 1 }, 2*time.Second, time.Millisecond)
	callerRTCP.send(rtcpFor(a.Socket().RTPAddr()), rr)
	require.Eventually(t, func() bool { return a.RTCPRemote() == callerRTCP.addr() }, 2*time.Second, time.Millisecond)
}

// TestSetRemoteMoves: a re-offer with a new address moves the stream and
// learns afresh; the same address again keeps the source learnt.
func TestSetRemoteMoves(t *testing.T) {
	ports, clock := clockedPorts(t)
	callerNAT, callee := newPeerAt(t, "127.0.0.3"), newPeer(t)
	moved := newPeer(t)
	signalled := netip.MustParseAddrPort("10.1.2.3:4000")
	a := newTestStream(t, ports, signalled, pcmuCodec, nil)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
	startBridge(t, a, b)
	callerNAT.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0xCA11, 1))
	require.Zero(t, recvSSRC(t, callee, 0xCA11))
	clock.Advance(LearnWindow)

	// A session refresh names the same address: nothing moves.
	a.SetRemote(signalled)
	require.Equal(t, callerNAT.addr(), a.Remote())
	callerNAT.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0xCA11, 2))
	require.Zero(t, recvSSRC(t, callee, 0xCA11))

	// A re-offer names a new address: the stream sends there at once and
	// takes it; the old source is foreign from then on.
	a.SetRemote(moved.addr())
	require.Equal(t, moved.addr(), a.Remote())
	callee.sendRTP(b.Socket().RTPAddr(), ssrcPacket(0xCA1E, 1))
	require.Zero(t, recvSSRC(t, moved, 0xCA1E))
	moved.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0x1234, 1))
	require.Zero(t, recvSSRC(t, callee, 0x1234))
	callerNAT.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, 3))
	requireForeign(t, ports, 1)
	require.Equal(t, moved.addr(), a.Remote())
}
