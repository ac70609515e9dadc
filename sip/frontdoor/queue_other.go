//go:build !linux

package frontdoor

import (
	"net"
	"time"
)

// stampReads leaves conn as it is where the kernel's receive stamp is not
// read: the queue delay stays zero and admission decides without it.
func stampReads(conn *net.UDPConn, _ *queueDelay) (net.PacketConn, error) { return conn, nil }

func receiveStamp([]byte) (time.Time, bool) { return time.Time{}, false }
