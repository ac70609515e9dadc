//go:build !linux

package media

import "net"

// canFlush is false where flushSocket is not written: Ports close the
// sockets of released pairs at once.
const canFlush = false

func flushSocket(*net.UDPConn) bool { return false }

func descriptorLimit() int { return 0 }
