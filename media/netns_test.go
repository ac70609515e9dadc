//go:build linux

package media

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vnum/vnum/internal/testenv"
)

// netns is a network namespace the test made (ip netns add), removed
// with everything in it at cleanup.
type netns struct {
	name string
	fd   int
}

var netnsSeq atomic.Int64

// newNetns makes a network namespace named after the process and a
// counter, so that test binaries running side by side never meet. Where
// namespaces cannot be made (no root, no ip), the test is skipped, or
// fails with VNUMTEST_REQUIRE_KERNEL_RELAY=1.
func newNetns(t *testing.T, role string) *netns {
	t.Helper()
	name := fmt.Sprintf("vnumk%d-%d%s", os.Getpid(), netnsSeq.Add(1), role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		if testenv.Require("KERNEL_RELAY") {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		t.Skipf("cannot make network namespaces here (needs root and iproute2; %s=1 fails instead): %v: %s",
			testenv.RequireVar("KERNEL_RELAY"), err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		out, err := exec.Command("ip", "netns", "del", name).CombinedOutput()
		require.NoError(t, err, "ip netns del %s: %s", name, out)
	})
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Close(fd) })
	return &netns{name: name, fd: fd}
}

// ip runs `ip -n NS args...` in n.
func (n *netns) ip(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.name}, args...)...).CombinedOutput()
	require.NoError(t, err, "ip -n %s %s: %s", n.name, strings.Join(args, " "), out)
}

// do runs fn on a thread moved into n: the sockets fn opens, the
// interfaces it lists and attaches to, are n's. Goroutines fn starts run
// elsewhere; sockets keep their namespace wherever they are used.
func (n *netns) do(t *testing.T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open this thread's namespace: %v", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", n.name, err)
	}
	defer func() {
		// A thread that could not go back stays locked: the runtime ends
		// it with the goroutine rather than reuse it.
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns back from %s: %v", n.name, err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

// sysctl writes a /proc/sys/net value inside n.
func (n *netns) sysctl(t *testing.T, key, value string) {
	t.Helper()
	n.do(t, func() {
		path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
		require.NoError(t, os.WriteFile(path, []byte(value), 0o644))
	})
}

// udpIn opens a UDP socket on addr inside n.
func (n *netns) udpIn(t *testing.T, addr string) *peer {
	t.Helper()
	var c *net.UDPConn
	n.do(t, func() {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
		require.NoError(t, err)
	})
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c}
}

// rawSender sends hand-made IPv4 packets from inside n (IPPROTO_RAW):
// unlike a UDP socket's over veth, their UDP checksum is whole in the
// packet, not left to an offload, so what the relay makes of it shows.
type rawSender struct {
	t  *testing.T
	fd int
}

func (n *netns) rawSender(t *testing.T) *rawSender {
	t.Helper()
	var fd int
	n.do(t, func() {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		require.NoError(t, err)
	})
	t.Cleanup(func() { _ = unix.Close(fd) })
	return &rawSender{t: t, fd: fd}
}

// send sends payload in UDP from src to dst, with its checksum or (csum
// false) with none (0, RFC 768).
func (r *rawSender) send(src, dst netip.AddrPort, payload []byte, csum bool) {
	r.t.Helper()
	pkt := ipv4UDP(src, dst, payload, csum)
	require.NoError(r.t, unix.Sendto(r.fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()}))
}

// ipv4UDP builds an IPv4 packet of 20 header bytes carrying a UDP
// datagram.
func ipv4UDP(src, dst netip.AddrPort, payload []byte, csum bool) []byte {
	b := make([]byte, 28+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[6:], 0x4000) // DF
	b[8] = 64
	b[9] = unix.IPPROTO_UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], ^onesSum(0, b[:20]))
	u := b[20:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	if csum {
		c := ^udpSum(b)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(u[6:], c)
	}
	return b
}

// udpSum is the ones' complement sum of a UDP datagram in IPv4 packet b
// with its pseudo-header (RFC 768): 0xffff when the checksum field is
// right.
func udpSum(b []byte) uint16 {
	u := b[20:]
	var pseudo [12]byte
	copy(pseudo[0:8], b[12:20])
	pseudo[9] = unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(u)))
	return onesSum(onesSum(0, pseudo[:]), u)
}

func onesSum(sum uint16, b []byte) uint16 {
	s := uint32(sum)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// capture reads the IPv4 packets arriving on one interface inside n
// (AF_PACKET), as they came off the wire.
type capture struct {
	t  *testing.T
	fd int
}

func (n *netns) capture(t *testing.T, ifname string) *capture {
	t.Helper()
	var fd int
	n.do(t, func() {
		ifi, err := net.InterfaceByName(ifname)
		require.NoError(t, err)
		proto := int(htons(unix.ETH_P_IP))
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		require.NoError(t, err)
		require.NoError(t, unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}))
		require.NoError(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}))
	})
	t.Cleanup(func() { _ = unix.Close(fd) })
	return &capture{t: t, fd: fd}
}

// next returns the next incoming IPv4 packet from src to dst (UDP), or
// fails after 2 s without one.
func (c *capture) next(src netip.Addr, dst netip.AddrPort) []byte {
	c.t.Helper()
	buf := make([]byte, 2048)
	for {
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		require.NoError(c.t, err, "no packet from %s to %s on the wire", src, dst)
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		p := buf[:n]
		if len(p) < 28 || p[9] != unix.IPPROTO_UDP || netip.AddrFrom4([4]byte(p[12:16])) != src ||
			netip.AddrFrom4([4]byte(p[16:20])) != dst.Addr() || binary.BigEndian.Uint16(p[22:]) != dst.Port() {
			continue
		}
		return append([]byte(nil), p...)
	}
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
