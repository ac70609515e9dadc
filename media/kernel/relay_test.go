package kernel

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/testenv"
)

// openRelay opens the relay on ip or skips the test where the kernel
// refuses (no privilege, an old kernel); VNUMTEST_REQUIRE_KERNEL_RELAY=1
// makes that a failure.
func openRelay(t *testing.T, ip netip.Addr, o Options) *Relay {
	t.Helper()
	r, err := Open(ip, o)
	if err != nil {
		if testenv.Require("KERNEL_RELAY") {
			t.Fatalf("kernel relay required (%s=1): %v", testenv.RequireVar("KERNEL_RELAY"), err)
		}
		t.Skipf("kernel relay unavailable here (run as root on Linux 5.10+; %s=1 fails instead): %v", testenv.RequireVar("KERNEL_RELAY"), err)
	}
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

func udp(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func addrOfConn(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// rtpPacket is a 20 ms PCMU packet (160 bytes of payload) numbered seq.
func rtpPacket(pt uint8, marker bool, seq uint16) []byte {
	b := make([]byte, 12+160)
	b[0] = 0x80
	b[1] = pt
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(b[8:], 0x11223344)
	for i := range 160 {
		b[12+i] = byte(i)
	}
	return b
}

func read(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 1500)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	require.NoError(t, err)
	return buf[:n], from
}

// nothing asserts that c receives nothing within a short while.
func nothing(t *testing.T, c *net.UDPConn, what string) {
	t.Helper()
	buf := make([]byte, 1500)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	require.Error(t, err, "%s: got %d bytes from %s", what, n, from)
}

// TestRelayOnLoopback: a flow's first packet goes up to the relay
// socket (handover); once user space acknowledges it, the program
// forwards the next ones itself from the other leg's port to the other
// peer, the payload type rewritten and the marker bit kept, counted; the
// relay socket sees none of them. Removing the flow sends packets up
// again, and closing the relay leaves nothing attached.
func TestRelayOnLoopback(t *testing.T) {
	for _, how := range []Attach{AttachTCX, AttachTC} {
		t.Run(how.String(), func(t *testing.T) { testRelayOnLoopback(t, how) })
	}
}

func testRelayOnLoopback(t *testing.T, how Attach) {
	lo := netip.MustParseAddr("127.0.0.1")
	r := openRelay(t, lo, Options{Attach: how})
	require.Equal(t, "lo", r.Interface())
	require.Equal(t, how, r.Attachment())
	progID := r.ProgramID()
	ids, err := Attached("lo")
	require.NoError(t, err)
	require.Contains(t, ids, progID)
	legA, legB := udp(t, "127.0.0.1"), udp(t, "127.0.0.1")
	peerA, peerB := udp(t, "127.0.0.1"), udp(t, "127.0.0.1")
	f := Flow{
		Key:  Key{Local: addrOfConn(legA), Peer: addrOfConn(peerA)},
		From: addrOfConn(legB), To: addrOfConn(peerB),
		PT: []PT{{From: 0, To: 8}, {From: 101, To: 96}},
	}
	require.NoError(t, r.Install(f))

	// Handover: the first packet goes up; user space relays and acks it.
	_, err = peerA.WriteToUDPAddrPort(rtpPacket(0, true, 1), addrOfConn(legA))
	require.NoError(t, err)
	pkt, from := read(t, legA)
	require.Equal(t, addrOfConn(peerA), from)
	_, err = legB.WriteToUDPAddrPort(pkt, addrOfConn(peerB))
	require.NoError(t, err)
	require.NoError(t, r.Ack(f.Key, pkt))
	got, _ := read(t, peerB)
	require.EqualValues(t, 1, binary.BigEndian.Uint16(got[2:]))

	for seq := uint16(2); seq < 12; seq++ {
		_, err := peerA.WriteToUDPAddrPort(rtpPacket(0, seq == 2, seq), addrOfConn(legA))
		require.NoError(t, err)
		got, from := read(t, peerB)
		require.Equal(t, addrOfConn(legB), from, "the packet leaves from leg B's relay port")
		require.EqualValues(t, seq, binary.BigEndian.Uint16(got[2:]))
		require.EqualValues(t, 8, got[1]&0x7f, "PCMU's payload type 0 becomes 8")
		require.Equal(t, seq == 2, got[1]&0x80 != 0, "marker bit kept")
		require.Equal(t, rtpPacket(0, false, seq)[4:], got[4:], "timestamp, SSRC and payload unchanged")
	}
	_, err = peerA.WriteToUDPAddrPort(rtpPacket(101, false, 12), addrOfConn(legA))
	require.NoError(t, err)
	got, _ = read(t, peerB)
	require.EqualValues(t, 96, got[1]&0x7f, "telephone-event's type is the other leg's")
	_, err = peerA.WriteToUDPAddrPort(rtpPacket(13, false, 13), addrOfConn(legA))
	require.NoError(t, err)
	got, _ = read(t, peerB)
	require.EqualValues(t, 13, got[1]&0x7f, "other payload types pass unchanged")
	nothing(t, legA, "the relay socket")

	var c Counters
	require.NoError(t, r.Counters(func(k Key, got Counters) {
		if k == f.Key {
			c = got
		}
	}))
	require.EqualValues(t, 12, c.Packets)
	require.EqualValues(t, 12*172, c.Bytes)
	require.True(t, c.Forwarding)
	s, err := r.Stats()
	require.NoError(t, err)
	require.EqualValues(t, 12, s.ForwardedLoopback)
	require.EqualValues(t, 1, s.UpHandover)

	last, err := r.Remove(f.Key)
	require.NoError(t, err)
	require.EqualValues(t, 12, last.Packets)
	n, err := r.Len()
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = peerA.WriteToUDPAddrPort(rtpPacket(0, false, 14), addrOfConn(legA))
	require.NoError(t, err)
	read(t, legA)
	_, err = r.Remove(f.Key)
	require.ErrorIs(t, err, ErrNoFlow)
	require.ErrorIs(t, r.Ack(f.Key, pkt), ErrNoFlow, "an ack after the flow leaves nothing behind")
	var k relayFlowKey
	var id relayRtpId
	require.False(t, r.objs.Acks.Iterate().Next(&k, &id), "no ack slot left")

	require.NoError(t, r.Close())
	requireDetached(t, progID)
}

// requireDetached asserts that the program id is attached to loopback's
// ingress neither by TCX nor as a cls_bpf filter.
func requireDetached(t *testing.T, id uint32) {
	t.Helper()
	ids, err := Attached("lo")
	require.NoError(t, err)
	require.NotContains(t, ids, id, "program %d still attached to lo", id)
}
