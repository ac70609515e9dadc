package frontdoor

import (
	"encoding/binary"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// stampReads turns on the kernel's receive stamp of every datagram
// (SO_TIMESTAMPNS, socket(7)) and returns conn wrapped to read it.
func stampReads(conn *net.UDPConn, delay *queueDelay) (net.PacketConn, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return conn, err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return conn, err
	}
	if serr != nil {
		return conn, serr
	}
	return &stampedConn{UDPConn: conn, oob: make([]byte, unix.CmsgSpace(16)), delay: delay}, nil
}

// receiveStamp finds the SCM_TIMESTAMPNS control message among oob.
func receiveStamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_TIMESTAMPNS {
			continue
		}
		// A struct timespec of this platform: two longs.
		switch len(m.Data) {
		case 16:
			return time.Unix(int64(binary.NativeEndian.Uint64(m.Data)), int64(binary.NativeEndian.Uint64(m.Data[8:]))), true
		case 8:
			return time.Unix(int64(int32(binary.NativeEndian.Uint32(m.Data))), int64(int32(binary.NativeEndian.Uint32(m.Data[4:])))), true
		}
	}
	return time.Time{}, false
}
