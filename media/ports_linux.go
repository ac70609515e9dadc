package media

import (
	"math"
	"net"

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
