package media

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSourceLatch walks one direction of a stream through packets from
// several sources at given times since its first packet, and pins which
// are taken and where the stream then sends.
func TestSourceLatch(t *testing.T) {
	t.Parallel()
	var (
		sdp      = netip.MustParseAddrPort("192.0.2.10:4000")  // what the SDP names
		sdpHost  = netip.MustParseAddrPort("192.0.2.10:5060")  // its host, another port
		nat      = netip.MustParseAddrPort("203.0.113.7:1024") // the peer's NAT
		attacker = netip.MustParseAddrPort("198.51.100.66:7078")
		other    = netip.MustParseAddrPort("198.51.100.67:7078")
	)
	type step struct {
		from     netip.AddrPort
		at       time.Duration // since the first packet
		taken    bool
		remoteIs netip.AddrPort // where packets go after it
	}
	after := LearnWindow + time.Second
	for name, steps := range map[string][]step{
		"the SDP's address ends the window at once": {
			{sdp, 0, true, sdp},
			{attacker, time.Millisecond, false, sdp},
			{sdpHost, 2 * time.Millisecond, false, sdp},
			{attacker, after, false, sdp},
			{sdp, after, true, sdp},
		},
		"a peer behind NAT is learnt in the window, then only it": {
			{nat, 0, true, nat},
			{attacker, time.Millisecond, false, nat},
			{nat, LearnWindow / 2, true, nat},
			{attacker, after, false, nat},
			{other, after, false, nat},
			{nat, 10 * after, true, nat},
		},
		"the SDP's host beats a source the SDP does not name, within the window": {
			{attacker, 0, true, attacker},
			{sdpHost, time.Millisecond, true, sdpHost},
			{attacker, 2 * time.Millisecond, false, sdpHost},
			{nat, 3 * time.Millisecond, false, sdpHost},
			{sdp, 4 * time.Millisecond, true, sdp},
			{sdpHost, 5 * time.Millisecond, false, sdp},
		},
		"not after it": {
			{attacker, 0, true, attacker},
			{sdpHost, after, false, attacker},
			{attacker, after, true, attacker},
		},
		"the SDP's address wins even after the window: who spoke first cannot keep the peer out": {
			{attacker, 0, true, attacker},
			{sdp, after, true, sdp},
			{attacker, after, false, sdp},
		},
		"the window counts from the first packet, however late it comes": {
			{nat, 0, true, nat},
			{attacker, LearnWindow - time.Nanosecond, false, nat},
			{other, LearnWindow, false, nat},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var l sourceLatch
			l.reset(sdp)
			require.Equal(t, sdp, l.remote, "packets go where the SDP says until a source is learnt")
			first := time.Unix(1000, 0)
			for i, s := range steps {
				ok, _ := l.take(s.from, [2]netip.Addr{}, matchAny, first.Add(s.at))
				require.Equal(t, s.taken, ok, "step %d: %v at %v", i, s.from, s.at)
				require.Equal(t, s.remoteIs, l.remote, "step %d", i)
			}
		})
	}
}

// TestSourceLatchRTCP: once RTP knows its peer, RTCP is taken only from
// that peer's host or the SDP's; a source below that neither is learnt nor
// opens the window; RTCP follows RTP to a new host unless it learnt the
// SDP's exact address.
func TestSourceLatchRTCP(t *testing.T) {
	t.Parallel()
	sdp := netip.MustParseAddrPort("192.0.2.10:4001")
	peer := netip.MustParseAddr("203.0.113.7")
	attacker := netip.MustParseAddrPort("198.51.100.66:7079")
	now := time.Unix(1000, 0)

	var l sourceLatch
	l.reset(sdp)
	ok, _ := l.take(attacker, [2]netip.Addr{peer}, matchHost, now)
	require.False(t, ok, "a source on neither host")
	require.True(t, l.until.IsZero(), "it did not open the window")
	later := now.Add(10 * LearnWindow)
	ok, _ = l.take(netip.AddrPortFrom(peer, 1025), [2]netip.Addr{peer}, matchHost, later)
	require.True(t, ok, "the peer's host, long after: the window opens with it")
	require.Equal(t, netip.AddrPortFrom(peer, 1025), l.remote)

	// RTP moves to another host (a re-learnt NAT): RTCP follows it and
	// forgets the source on the old host.
	moved := netip.MustParseAddrPort("203.0.113.99:2001")
	l.follow(moved)
	require.Equal(t, moved, l.remote)
	_, learnt := l.learnt()
	require.False(t, learnt)
	// On the same host it keeps its own source.
	ok, _ = l.take(netip.AddrPortFrom(moved.Addr(), 3000), [2]netip.Addr{{}, moved.Addr()}, matchHost, later)
	require.True(t, ok)
	l.follow(netip.AddrPortFrom(moved.Addr(), 2001))
	require.Equal(t, netip.AddrPortFrom(moved.Addr(), 3000), l.remote)
	// The SDP's exact address is never given up for RTP's guess.
	ok, _ = l.take(sdp, [2]netip.Addr{{}, moved.Addr()}, matchHost, later)
	require.True(t, ok)
	l.follow(moved)
	require.Equal(t, sdp, l.remote)
}

// BenchmarkSourceLatch is the cost, per packet, of the source check on the
// relay's path: a packet from the peer learnt, and one from a foreign
// source after the window.
func BenchmarkSourceLatch(b *testing.B) {
	sdp := netip.MustParseAddrPort("192.0.2.10:4000")
	nat := netip.MustParseAddrPort("203.0.113.7:1024")
	attacker := netip.MustParseAddrPort("198.51.100.66:7078")
	var l sourceLatch
	l.reset(sdp)
	now := time.Unix(1000, 0)
	l.take(nat, [2]netip.Addr{}, matchAny, now)
	l.take(attacker, [2]netip.Addr{}, matchAny, now.Add(2*LearnWindow))
	b.Run("peer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, _ := l.take(nat, [2]netip.Addr{}, matchAny, now); !ok {
				b.Fatal("the peer was dropped")
			}
		}
	})
	b.Run("foreign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, _ := l.take(attacker, [2]netip.Addr{}, matchAny, now); ok {
				b.Fatal("a foreign source was taken")
			}
		}
	})
}
