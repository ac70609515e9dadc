package media

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestPortsReuseIdle: a released pair keeps its sockets bound, and the
// next Open of it (after the drain) takes them again with nothing of the
// old call in them: what the old call left and what came to the idle
// ports is read and dropped, a read waits for new packets, and what
// arrives then is read. Pairs idle for idleKeep are closed, their ports
// free for anyone; CloseIdle closes the rest.
func TestPortsReuseIdle(t *testing.T) {
	t.Parallel()
	q, port := rangePorts(t, 1)
	now := time.Unix(1000, 0)
	q.now = func() time.Time { return now }

	s, err := q.Open()
	require.NoError(t, err)
	rtp, rtcp := s.RTP, s.RTCP
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	send := func() {
		for range 3 {
			_, err = peer.WriteToUDP([]byte("late rtp"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			require.NoError(t, err)
			_, err = peer.WriteToUDP([]byte("late rtcp"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
			require.NoError(t, err)
		}
	}
	// The old call's last packets, left unread in its sockets as it ends.
	send()
	waitQueued(t, rtp, rtcp)
	require.NoError(t, s.Close())
	require.Equal(t, 1, q.Idle())
	// Late packets, and a stranger's, while it drains: the shared reader
	// reads the idle sockets and drops what they hold.
	send()
	waitEmptied(t, rtp, "the reader emptied the idle RTP socket")
	waitEmptied(t, rtcp, "the reader emptied the idle RTCP socket")
	send()
	waitEmptied(t, rtp, "and what comes later")

	now = now.Add(DrainTime)
	s, err = q.Open()
	require.NoError(t, err)
	require.Same(t, rtp, s.RTP, "the idle sockets are taken again")
	require.Same(t, rtcp, s.RTCP)
	require.Zero(t, q.Idle())
	for _, c := range []*net.UDPConn{s.RTP, s.RTCP} {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
		_, _, err := c.ReadFromUDP(make([]byte, 64))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "nothing of before the Open is read")
		require.NoError(t, c.SetReadDeadline(time.Time{}))
	}
	_, err = peer.WriteToUDP([]byte("new"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	require.NoError(t, err)
	buf := make([]byte, 64)
	n, _, err := s.RTP.ReadFromUDP(buf)
	require.NoError(t, err)
	require.Equal(t, "new", string(buf[:n]))

	// Released again and left idle for idleKeep: closed at the next
	// release or Open, the ports free for anyone.
	require.NoError(t, s.Close())
	now = now.Add(idleKeep)
	s, err = q.Open()
	require.NoError(t, err)
	require.NotSame(t, rtp, s.RTP, "a pair idle for idleKeep is bound anew")
	_, err = rtp.WriteToUDP([]byte("x"), peer.LocalAddr().(*net.UDPAddr))
	require.ErrorIs(t, err, net.ErrClosed)
	require.NoError(t, s.Close())
	require.Equal(t, 1, q.Idle())
	q.CloseIdle()
	require.Zero(t, q.Idle())
	for _, p := range []int{port, port + 1} {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		require.NoError(t, err, "CloseIdle frees the ports")
		require.NoError(t, c.Close())
	}
}

// waitQueued waits until each of conns has a datagram waiting (loopback
// delivers at once; the wait only bounds a slow machine).
func waitQueued(t *testing.T, conns ...*net.UDPConn) {
	t.Helper()
	for _, c := range conns {
		require.Eventually(t, func() bool { return queued(t, c) > 0 }, 5*time.Second, time.Millisecond)
	}
}

// waitEmptied waits until nothing waits in c's receive queue: someone
// read it.
func waitEmptied(t *testing.T, c *net.UDPConn, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return queued(t, c) == 0 }, 2*time.Second, time.Millisecond, msg)
}

// queued is the bytes waiting in c's receive queue.
func queued(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	n := -1
	require.NoError(t, raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }))
	return n
}

// TestPortsBoundLimit: with SetBoundLimit, or the descriptors media may take (fdBoundOf),
// a pair released while that many pairs are bound (open or idle) closes
// its sockets at once; and a bind that finds the process out of
// descriptors closes idle pairs and tries again, so that idle sockets
// never cost a call its ports.
func TestPortsBoundLimit(t *testing.T) {
	t.Parallel()
	q, _ := rangePorts(t, 4)
	q.drain = 0
	q.SetBoundLimit(2)
	openThenClose(t, q, 3)
	require.Equal(t, 2, q.Idle(), "the third pair released was over the limit")
	q.CloseIdle()
	// The same bound from the descriptor limit: open and idle pairs hold
	// two descriptors each of all but the budget's reserve and TCP floor,
	// so that a range of 8,000 pairs under a limit of 20,000 stays bound
	// (half the limit kept 5,000 and bound the rest anew for every call).
	require.Equal(t, 0, fdBoundOf(0), "no limit known: no bound")
	require.Equal(t, 9840, fdBoundOf(20000))
	require.Equal(t, 1, fdBoundOf(100), "a limit below the reserve still lets one pair be kept")
	q.SetBoundLimit(0)
	q.fdBound = fdBoundOf(descriptorsKept + 4)
	openThenClose(t, q, 3)
	require.Equal(t, 2, q.Idle(), "the third pair released was over the descriptors media may take")
	q.CloseIdle()
	q.fdBound = 0

	// Out of descriptors: the bind fails with EMFILE until idle pairs close.
	q.SetBoundLimit(0)
	s, err := q.Open()
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.Equal(t, 1, q.Idle())
	idle := q.idle[s.Port]
	listen := q.listen
	q.listen = func(a netip.AddrPort) (*net.UDPConn, error) {
		if len(q.idle) > 0 {
			return nil, &os.SyscallError{Syscall: "socket", Err: unix.EMFILE}
		}
		return listen(a)
	}
	// Draw pairs until one that was not idle is bound.
	for {
		o, err := q.Open()
		require.NoError(t, err, "the idle pair was closed to make room")
		require.NoError(t, o.Close())
		if o.Port != s.Port {
			break
		}
	}
	_, err = idle.rtp.WriteToUDP([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
	require.ErrorIs(t, err, net.ErrClosed, "the idle pair was closed")
	q.CloseIdle()
}

// openThenClose opens n pairs of q, then closes them all.
func openThenClose(t *testing.T, q *Ports, n int) {
	t.Helper()
	socks := make([]*Socket, 0, n)
	for range n {
		s, err := q.Open()
		require.NoError(t, err)
		socks = append(socks, s)
	}
	for _, s := range socks {
		require.NoError(t, s.Close())
	}
}

// TestPortsIdleHeld: a pair bound anew counts against the bound as the
// idle ones do (the longest idle close first), so open and idle pairs
// never exceed it, nor fall short of it; what is sprayed at an idle RTP
// socket is read and dropped, and what comes once the pair is in use is
// queued for its call; and a node gone quiet closes its idle pairs on a
// timer.
func TestPortsIdleHeld(t *testing.T) {
	t.Parallel()
	q, _ := rangePorts(t, 4)
	q.drain = 0
	q.sweepEvery = 20 * time.Millisecond
	q.SetBoundLimit(2)
	sender, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { sender.Close() })
	sprayed := make([]byte, 60000) // one datagram fits any queue that is not full
	spray := func(c *net.UDPConn) {
		_, err := sender.WriteToUDP(sprayed, c.LocalAddr().(*net.UDPAddr))
		require.NoError(t, err)
	}

	a, err := q.Open()
	require.NoError(t, err)
	b, err := q.Open()
	require.NoError(t, err)
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	require.Equal(t, 2, q.Idle())
	// Sprayed at an idle RTP socket: the shared reader drops it.
	spray(a.RTP)
	waitEmptied(t, a.RTP, "an idle RTP socket holds nothing")
	for range 8 {
		s, err := q.Open()
		require.NoError(t, err)
		require.LessOrEqual(t, q.InUse()+q.Idle(), 2, "open and idle within the bound")
		spray(s.RTP)
		waitQueued(t, s.RTP) // a socket in use takes what comes
		require.NoError(t, s.Close())
		require.Equal(t, 2, q.Idle(), "the bound is two pairs, open or idle")
	}

	// Quiet: the timer closes what has been idle long enough.
	q.mu.Lock()
	now := time.Now()
	q.now = func() time.Time { return now.Add(time.Since(now) * 1000) } // idleKeep passes in 30 ms
	q.mu.Unlock()
	require.Eventually(t, func() bool { return q.Idle() == 0 }, 5*time.Second, 10*time.Millisecond)
}

// rangePorts is a pool of pairs free pairs on 127.0.0.1 (its first RTP
// port returned too), whose idle sockets the test's end closes.
func rangePorts(t *testing.T, pairs int) (*Ports, int) {
	t.Helper()
	min, max := freeRange(t, pairs)
	q, err := NewPorts("127.0.0.1", min, max)
	require.NoError(t, err)
	t.Cleanup(q.CloseIdle)
	return q, min
}
