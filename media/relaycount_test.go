package media

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// counts is a RelayCounts with the given relayed packets and drops; the
// reasons not given are zero.
func counts(relayedN uint64, drops map[DropReason]uint64) RelayCounts {
	rc := RelayCounts{Relayed: relayedN, Received: relayedN, Dropped: map[DropReason]uint64{}}
	for r := range DropReason(numDropReasons) {
		rc.Dropped[r] = drops[r]
		rc.Received += drops[r]
	}
	return rc
}

// requireCounts waits until the streams of ports have read want.Received
// packets (the readers count after the packet is handled, and a dropped
// packet has no other sign), then requires exactly want.
func requireCounts(t *testing.T, ports *Ports, want RelayCounts, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return ports.RelayCounts().Received >= want.Received },
		2*time.Second, time.Millisecond, "%s: fewer than %d packets read", msg, want.Received)
	require.Equal(t, want, ports.RelayCounts(), msg)
}

func audioPacket(seq uint16) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, SSRC: 0xCA11}, Payload: make([]byte, frameSamples)}
}

// TestRelayCounts drives real packets over loopback through the phases of
// a call and pins what each counts as: the streams of one Ports share the
// counters, both directions add up, and every packet read is relayed or
// dropped for exactly one reason.
func TestRelayCounts(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller, callee, stranger := newPeer(t), newPeer(t), newPeer(t)
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, event101)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, event96)
	require.Equal(t, counts(0, nil), ports.RelayCounts(), "a new pool has read nothing")

	// Before the bridge the packets are the stream's own (digits); what
	// is not RTP v2 is dropped whatever the phase.
	for i := range 3 {
		caller.sendRTP(a.Socket().RTPAddr(), audioPacket(uint16(i)))
	}
	caller.send(a.Socket().RTPAddr(), []byte("not rtp"))
	v1 := audioPacket(9)
	v1.Version = 1
	caller.sendRTP(a.Socket().RTPAddr(), v1)
	requireCounts(t, ports, counts(0, map[DropReason]uint64{DropNoBridge: 3, DropNotRTP: 2}), "before the bridge")

	// Bridged: both directions relay; a packet from a source other than
	// the one the stream learnt is dropped as foreign.
	startBridge(t, a, b)
	for i := range 5 {
		caller.sendRTP(a.Socket().RTPAddr(), audioPacket(uint16(10+i)))
		callee.recvRTP(time.Second)
	}
	for i := range 4 {
		callee.sendRTP(b.Socket().RTPAddr(), audioPacket(uint16(20+i)))
		caller.recvRTP(time.Second)
	}
	stranger.sendRTP(a.Socket().RTPAddr(), audioPacket(30))
	requireCounts(t, ports, counts(9, map[DropReason]uint64{DropNoBridge: 3, DropNotRTP: 2, DropForeignSource: 1}), "bridged")
	require.Equal(t, caller.addr(), a.Remote(), "the stranger did not move the latched remote")

	// B on hold (RFC 3264 §8.4): the caller's packets have nowhere to go.
	b.SetRemote(netip.AddrPortFrom(netip.IPv4Unspecified(), callee.addr().Port()))
	for i := range 3 {
		caller.sendRTP(a.Socket().RTPAddr(), audioPacket(uint16(40+i)))
	}
	requireCounts(t, ports, counts(9, map[DropReason]uint64{DropNoBridge: 3, DropNotRTP: 2, DropForeignSource: 1, DropNoRemote: 3}), "B on hold")

	// B's new address is one the IPv4 socket cannot send to: the kernel
	// refuses each packet.
	b.SetRemote(netip.MustParseAddrPort("[::1]:5004"))
	for i := range 2 {
		caller.sendRTP(a.Socket().RTPAddr(), audioPacket(uint16(50+i)))
	}
	requireCounts(t, ports, counts(9, map[DropReason]uint64{DropNoBridge: 3, DropNotRTP: 2, DropForeignSource: 1, DropNoRemote: 3,
		DropSendError: 2}), "B unreachable")

	// A packet whose handling panics (the formats knocked out from under
	// an unbridged stream's detector) is dropped as such, and only as such.
	c := newTestStream(t, ports, caller.addr(), pcmuCodec, event101)
	good := c.formats.Load()
	c.formats.Store(nil)
	caller.sendRTP(c.Socket().RTPAddr(), audioPacket(60))
	requireCounts(t, ports, counts(9, map[DropReason]uint64{DropNoBridge: 3, DropNotRTP: 2, DropForeignSource: 1, DropNoRemote: 3,
		DropSendError: 2, DropPanic: 1}), "panic")
	c.formats.Store(good)
	caller.sendRTP(c.Socket().RTPAddr(), audioPacket(61))
	requireCounts(t, ports, counts(9, map[DropReason]uint64{DropNoBridge: 4, DropNotRTP: 2, DropForeignSource: 1, DropNoRemote: 3,
		DropSendError: 2, DropPanic: 1}), "after the panic the reader counts on")
}

// TestRelayCountsPerPool: counters belong to the Ports the sockets came
// from, so two nodes in one process (tests) never see each other's
// packets, and a send to a closed leg counts as a send error.
func TestRelayCountsPerPool(t *testing.T) {
	p1, p2 := newTestPorts(t), newTestPorts(t)
	checkNoLeaks(t, p1)
	checkNoLeaks(t, p2)
	caller, callee := newPeer(t), newPeer(t)
	a := newTestStream(t, p1, caller.addr(), pcmuCodec, nil)
	b := newTestStream(t, p2, callee.addr(), pcmuCodec, nil)
	require.NoError(t, Relay(a, b))
	caller.sendRTP(a.Socket().RTPAddr(), audioPacket(1))
	callee.recvRTP(time.Second)
	requireCounts(t, p1, counts(1, nil), "the reading stream's pool counts")
	require.Equal(t, counts(0, nil), p2.RelayCounts(), "the sending stream's pool read nothing")

	require.NoError(t, b.Close())
	caller.sendRTP(a.Socket().RTPAddr(), audioPacket(2))
	requireCounts(t, p1, counts(1, map[DropReason]uint64{DropSendError: 1}), "relay into a closed leg")
}

func TestDropReasonString(t *testing.T) {
	for r, want := range map[DropReason]string{
		DropNotRTP: "not_rtp", DropNoBridge: "no_bridge", DropNoRemote: "no_remote",
		DropSendError: "send_error", DropPanic: "panic", DropForeignSource: "foreign_source",
		DropReason(numDropReasons): "unknown", -1: "unknown",
	} {
		require.Equal(t, want, r.String())
	}
}
