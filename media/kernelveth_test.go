//go:build linux

package media

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media/kernel"
)

// vethNet is a small network of namespaces joined by veth pairs: vnum's
// relay on one Ethernet interface (r0, 10.199.0.1) behind a router
// (10.199.0.254) that reaches the caller (10.199.1.2, and a stranger on
// 10.199.1.3) and the carrier (10.199.2.2) on networks of their own.
type vethNet struct {
	relay, router, caller, carrier *netns
}

const (
	vethRelayIP   = "10.199.0.1"
	vethCallerIP  = "10.199.1.2"
	vethStranger  = "10.199.1.3"
	vethCarrierIP = "10.199.2.2"
)

// newVethNet builds the network; with forwarding, the relay's interface
// forwards IPv4 (the program then sends through a FIB lookup; without,
// the kernel resolves the next hop for it).
func newVethNet(t *testing.T, forwarding bool) *vethNet {
	t.Helper()
	n := &vethNet{relay: newNetns(t, "r"), router: newNetns(t, "g"), caller: newNetns(t, "a"), carrier: newNetns(t, "b")}
	n.relay.ip(t, "link", "add", "r0", "type", "veth", "peer", "name", "g0", "netns", n.router.name)
	n.router.ip(t, "link", "add", "g1", "type", "veth", "peer", "name", "a0", "netns", n.caller.name)
	n.router.ip(t, "link", "add", "g2", "type", "veth", "peer", "name", "b0", "netns", n.carrier.name)
	for _, c := range []struct {
		ns    *netns
		dev   string
		addrs []string
	}{
		{n.relay, "r0", []string{vethRelayIP + "/24"}},
		{n.router, "g0", []string{"10.199.0.254/24"}},
		{n.router, "g1", []string{"10.199.1.254/24"}},
		{n.router, "g2", []string{"10.199.2.254/24"}},
		{n.caller, "a0", []string{vethCallerIP + "/24", vethStranger + "/24"}},
		{n.carrier, "b0", []string{vethCarrierIP + "/24"}},
	} {
		for _, a := range c.addrs {
			c.ns.ip(t, "addr", "add", a, "dev", c.dev)
		}
		c.ns.ip(t, "link", "set", c.dev, "up")
	}
	for _, ns := range []*netns{n.relay, n.router, n.caller, n.carrier} {
		ns.ip(t, "link", "set", "lo", "up")
	}
	n.relay.ip(t, "route", "add", "default", "via", "10.199.0.254")
	n.caller.ip(t, "route", "add", "default", "via", "10.199.1.254")
	n.carrier.ip(t, "route", "add", "default", "via", "10.199.2.254")
	n.router.sysctl(t, "net.ipv4.ip_forward", "1")
	if forwarding {
		n.relay.sysctl(t, "net.ipv4.conf.r0.forwarding", "1")
	}
	return n
}

// TestKernelRelayAcrossNamespaces: a call between a caller and a carrier
// in namespaces of their own, through vnum's relay on a real Ethernet
// interface (veth) behind a router. Once both legs are learnt, audio
// crosses both ways through the kernel, leaving from the other leg's
// port with the payload types rewritten, the checksums right on the wire
// (a UDP checksum, or none, as it came) and the relay's TTL, while
// vnum's sockets see none of it; a stranger's flood to a relay port is
// neither forwarded nor learnt; the end of the call leaves no flow, and
// closing the relay no program.
func TestKernelRelayAcrossNamespaces(t *testing.T) {
	for _, forwarding := range []bool{false, true} {
		name := "host not forwarding"
		if forwarding {
			name = "forwarding host"
		}
		t.Run(name, func(t *testing.T) { testKernelRelayAcrossNamespaces(t, forwarding) })
	}
}

func testKernelRelayAcrossNamespaces(t *testing.T, forwarding bool) {
	n := newVethNet(t, forwarding)
	var r *kernel.Relay
	var ports *Ports
	n.relay.do(t, func() {
		r = openKernelRelay(t, vethRelayIP, kernel.Options{})
		ports = kernelPortsOn(t, r, vethRelayIP)
	})
	require.Equal(t, "r0", r.Interface())
	caller := n.caller.udpIn(t, vethCallerIP)
	carrier := n.carrier.udpIn(t, vethCarrierIP)
	stranger := n.caller.udpIn(t, vethStranger)
	var a, b *Stream
	n.relay.do(t, func() {
		a = newTestStream(t, ports, caller.addr(), pcmuCodec, event101)
		b = newTestStream(t, ports, carrier.addr(), pcmuCodec, event96)
	})
	relayBoth(t, a, b)
	waitInKernel(t, caller, carrier, a, b, r)

	before := ports.RelayCounts()
	statsBefore, err := r.Stats()
	require.NoError(t, err)
	raw := n.caller.rawSender(t)
	wire := n.carrier.capture(t, "b0")
	relayIP := netip.MustParseAddr(vethRelayIP)
	const count = 40
	for i := range uint16(count) {
		pkt, err := eventPacket(t, '3', 101, 160*uint32(i), 500+i, i == 0, false).Marshal()
		require.NoError(t, err)
		withSum := i%2 == 0
		raw.send(caller.addr(), a.Socket().RTPAddr(), pkt, withSum)
		got := carrier.recvRTP(time.Second)
		require.Equal(t, uint8(96), got.PayloadType, "telephone-event in the carrier's type")
		require.Equal(t, 500+i, got.SequenceNumber)

		w := wire.next(relayIP, carrier.addr())
		require.Equal(t, uint16(0xffff), onesSum(0, w[:20]), "IP header checksum")
		require.EqualValues(t, b.Socket().Port, binary.BigEndian.Uint16(w[20:]), "from leg B's relay port")
		require.EqualValues(t, 63, w[8], "the relay's TTL (64), less the router's hop")
		require.EqualValues(t, 96, w[29]&0x7f)
		if withSum {
			require.Equal(t, uint16(0xffff), udpSum(w), "UDP checksum fixed for the new addresses, ports and payload type")
		} else {
			require.Zero(t, binary.BigEndian.Uint16(w[26:]), "no UDP checksum stays none")
		}

		carrier.sendRTP(b.Socket().RTPAddr(), numbered(0xB, 0, 700+i))
		buf, src := caller.recv(time.Second)
		require.NotNil(t, buf, "the carrier's audio reaches the caller")
		require.Equal(t, a.Socket().RTPAddr(), src, "from leg A's relay port")
	}
	require.Eventually(t, func() bool { return ports.RelayCounts().RelayedKernel >= before.RelayedKernel+2*count },
		3*KernelPoll, 10*time.Millisecond)
	after := ports.RelayCounts()
	require.Equal(t, before.Relayed, after.Relayed, "vnum's sockets saw none of it")
	require.Equal(t, before.RelayedKernel+2*count, after.RelayedKernel)
	stats, err := r.Stats()
	require.NoError(t, err)
	if forwarding {
		require.EqualValues(t, 2*count, stats.ForwardedFIB-statsBefore.ForwardedFIB, "%+v", stats)
	} else {
		require.EqualValues(t, 2*count, stats.ForwardedNeigh-statsBefore.ForwardedNeigh, "%+v", stats)
	}

	// A stranger floods the caller's relay port.
	const flood = 500
	for i := range flood {
		stranger.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, uint16(i)))
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
	require.Eventually(t, func() bool {
		return ports.RelayCounts().Dropped[DropForeignSource] == before.Dropped[DropForeignSource]+flood
	},
		5*time.Second, time.Millisecond, "the flood reaches vnum's socket and is dropped there: %+v", ports.RelayCounts())
	caller.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0xCA11, 1))
	require.Zero(t, recvSSRC(t, carrier, 0xCA11), "the carrier hears the caller, never the stranger")
	require.Equal(t, caller.addr(), a.Remote())
	require.True(t, a.InKernel())

	id := r.ProgramID()
	n.relay.do(t, func() {
		ids, err := kernel.Attached("r0")
		require.NoError(t, err)
		require.Contains(t, ids, id)
	})
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	require.Zero(t, flows(t, r), "the call's end leaves no flow")
	require.NoError(t, r.Close())
	n.relay.do(t, func() {
		ids, err := kernel.Attached("r0")
		require.NoError(t, err)
		require.NotContains(t, ids, id, "no program left on r0 once the relay is closed")
	})
}
