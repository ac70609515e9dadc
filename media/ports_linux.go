package media

import (
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
	var b [1]byte // a datagram is dropped whole, whatever the buffer holds
	err = raw.Read(func(fd uintptr) bool {
		for range flushMax {
			_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_DONTWAIT)
			if err == unix.EAGAIN {
				empty = true
				return true
			}
		}
		return true
	})
	return err == nil && empty
}
