package media

import (
	"math"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// canFlush says idle sockets can be flushed here, so Ports keep them.
const canFlush = true

// flushMax bounds the datagrams flushSocket drops: a socket holding more
// (a flood while it was idle) is closed rather than read out.
const flushMax = 256

// flushSocket drops every datagram waiting in c's receive queue (and any
// error an ICMP message left on it), without waiting, and says whether
// the queue is now empty. c's read deadline must not be in the past.
func flushSocket(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	empty := false
	err = raw.Read(func(fd uintptr) bool {
		for range flushMax {
			if dropOne(int(fd)) == unix.EAGAIN {
				empty = true
				return true
			}
		}
		return true
	})
	return err == nil && empty
}

// dropOne reads the next datagram waiting on the socket fd, if any, and
// drops it: a datagram is read whole whatever the buffer holds, so none
// is given, and no source address is asked for (nothing is allocated).
// EAGAIN says nothing was waiting; another error is what the socket
// reported (an ICMP error), taken off it.
func dropOne(fd int) unix.Errno {
	for {
		_, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return e
		}
	}
}

// descriptorLimit is the process's soft limit on descriptors (Go raises
// it to the hard limit at start), or 0 when it cannot be read.
func descriptorLimit() int {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return 0
	}
	return int(min(lim.Cur, math.MaxInt32))
}

// idleQueue is the receive queue an idle RTP socket is given (the kernel
// doubles it, and keeps at least a few KB): a datagram or two.
const idleQueue = 1024

// setIdleQueue makes c's receive queue small for a pair going idle (on),
// or gives it back the size it had (off), and says whether it could.
func setIdleQueue(c *net.UDPConn, on bool) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	size := idleQueue
	if !on {
		size = defaultQueue()
	}
	ok := false
	err = raw.Control(func(fd uintptr) {
		ok = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size) == nil
	})
	return err == nil && ok
}

// defaultQueue is the receive queue a new UDP socket has here
// (net.core.rmem_default), as SO_RCVBUF takes it: half what the kernel
// reports. It is read once, from a socket of its own.
var defaultQueue = sync.OnceValue(func() int {
	const linuxDefault = 212992 / 2
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return linuxDefault
	}
	defer unix.Close(fd)
	n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil || n <= 0 {
		return linuxDefault
	}
	return n / 2
})
