package media

import (
	"errors"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rtpRecv reads the RTP socket of one stream without holding a buffer
// while it waits: the runtime's poller says when a datagram is there, and
// only then is a buffer taken from packetBufs and the datagram read into
// it, without waiting (recvfrom with MSG_DONTWAIT, its source address on
// the stack). A leg that sends 50 packets a second thus holds a buffer
// for the microseconds its packet takes, not for the whole call. It is
// used by the stream's RTP reader alone (one at a time: see park).
type rtpRecv struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool // read, bound once: no closure per packet

	// What the last read gave: the buffer (nil when it gave nothing),
	// the datagram's length and source, or the error.
	bp  *[]byte
	n   int
	src netip.AddrPort
	err error
}

// recvRTP waits for the next datagram on s's RTP socket and returns it in
// a buffer of packetBufs that the caller gives back, or an error (the
// socket closed, the read deadline passed, an error the socket reported).
func (s *Stream) recvRTP() (*[]byte, int, netip.AddrPort, error) {
	r := s.recv
	if r == nil {
		raw, err := s.sock.RTP.SyscallConn()
		if err != nil {
			return nil, 0, netip.AddrPort{}, err
		}
		r = &rtpRecv{raw: raw}
		r.fn = r.read
		s.recv = r
	}
	r.bp, r.n, r.src, r.err = nil, 0, netip.AddrPort{}, nil
	if err := r.raw.Read(r.fn); err != nil {
		if r.bp != nil {
			packetBufs.Put(r.bp)
		}
		return nil, 0, netip.AddrPort{}, err
	}
	if r.err != nil {
		return nil, 0, netip.AddrPort{}, r.err
	}
	return r.bp, r.n, r.src, nil
}

// read is the raw read: false sends the runtime's poller waiting for the
// socket to be readable, true ends the wait.
func (r *rtpRecv) read(fd uintptr) bool {
	if r.bp == nil {
		r.bp = packetBufs.Get().(*[]byte)
	}
	b := *r.bp
	var sa unix.RawSockaddrAny
	for {
		l := uint32(unix.SizeofSockaddrAny)
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)))
		switch {
		case e == 0:
			r.n, r.src = int(n), rawAddrPort(&sa)
			return true
		case e == unix.EINTR:
			continue
		case errors.Is(e, unix.EAGAIN):
			// Nothing there: the buffer goes back while we wait.
			packetBufs.Put(r.bp)
			r.bp = nil
			return false
		default:
			packetBufs.Put(r.bp)
			r.bp, r.err = nil, e
			return true
		}
	}
}

// rawAddrPort is the address in sa, IPv4 or IPv6 (unmapped).
func rawAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), ntohs(a.Port))
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), ntohs(a.Port))
	}
	return netip.AddrPort{}
}

// ntohs turns a port as the kernel stores it (network order) into a number.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
