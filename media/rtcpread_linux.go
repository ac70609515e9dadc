package media

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// rtcpReader reads the RTCP sockets of all the streams of one Ports on one
// goroutine, through an epoll set of their descriptors, instead of one
// goroutine and one read buffer per socket: RTCP comes every few seconds
// per stream (RFC 3550 §6.2), and a parked goroutine costs its stack (4 KiB
// at least) and its buffer for the whole of a call. The goroutine runs
// while the set holds a stream: the first stream added starts it, the last
// removed ends it.
type rtcpReader struct {
	mu   sync.Mutex // guards cur, next and the sets' streams; held while a stream's packets are handled
	cur  *rtcpSet
	next uint64 // the last token given
}

// rtcpSet is one epoll set and the streams in it, by token; its goroutine
// (run) ends when the set's file is closed.
type rtcpSet struct {
	file    *os.File // the epoll descriptor, in the runtime's poller
	epfd    int
	streams map[uint64]*Stream
}

// rtcpBatch is how many datagrams one stream's turn reads at most before
// the next ready stream's: the set is level-triggered, so what is left is
// reported again.
const rtcpBatch = 8

// add puts s's RTCP socket in the set, starting the set's goroutine when
// it is the first. An error leaves s out: its caller reads s on a
// goroutine of its own.
func (r *rtcpReader) add(s *Stream) error {
	raw, err := s.sock.RTCP.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		set, err := newRTCPSet()
		if err != nil {
			return err
		}
		r.cur = set
		go r.run(set)
	}
	r.next++
	tok := r.next
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	if err := unix.EpollCtl(r.cur.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.closeIfEmpty()
		return err
	}
	r.cur.streams[tok] = s
	s.rtcpTok, s.rtcpFD = tok, fd
	return nil
}

// remove takes s out of the set, before its socket closes. Once it
// returns no packet of s is being handled, nor will be.
func (r *rtcpReader) remove(s *Stream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil || r.cur.streams[s.rtcpTok] != s {
		return
	}
	// The socket is still open: its descriptor is s's.
	_ = unix.EpollCtl(r.cur.epfd, unix.EPOLL_CTL_DEL, s.rtcpFD, nil)
	delete(r.cur.streams, s.rtcpTok)
	r.closeIfEmpty()
}

// closeIfEmpty ends the current set when it holds no stream. r.mu is held.
func (r *rtcpReader) closeIfEmpty() {
	if len(r.cur.streams) == 0 {
		// Closing the file wakes the set's goroutine with an error.
		_ = r.cur.file.Close()
		r.cur = nil
	}
}

func newRTCPSet() (*rtcpSet, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Non-blocking, the descriptor goes into the runtime's poller: the set
	// waits on it as a socket read does, with no thread of its own.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	return &rtcpSet{file: os.NewFile(uintptr(epfd), "rtcp-epoll"), epfd: epfd, streams: map[uint64]*Stream{}}, nil
}

// run waits for the set's sockets to be readable and hands what they read
// to their streams, until the set's file is closed.
func (r *rtcpReader) run(set *rtcpSet) {
	raw, err := set.file.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 64)
	buf := make([]byte, maxPacket)
	for {
		n := 0
		err := raw.Read(func(fd uintptr) bool {
			var werr error
			n, werr = unix.EpollWait(int(fd), events, 0)
			// Nothing ready (or a signal): wait for the set to be readable.
			return werr == nil && n > 0
		})
		if err != nil {
			return // closed: the set's last stream left
		}
		r.mu.Lock()
		for _, ev := range events[:n] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if s := set.streams[tok]; s != nil {
				s.readRTCPReady(buf)
			}
		}
		r.mu.Unlock()
	}
}

// readRTCPReady reads what s's RTCP socket holds, rtcpBatch datagrams at
// most, without waiting.
func (s *Stream) readRTCPReady(buf []byte) {
	raw, err := s.sock.RTCP.SyscallConn()
	if err != nil {
		return
	}
	for range rtcpBatch {
		var n int
		var from unix.Sockaddr
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return true // never wait: the set does
		}); err != nil {
			return
		}
		if errors.Is(rerr, syscall.EAGAIN) {
			return
		}
		if rerr != nil {
			// An ICMP error reported on the socket: skipped, as a
			// reader of its own skips it.
			continue
		}
		s.rtcpPacketSafe(buf[:n], sockaddrPort(from))
	}
}

// rtcpPacketSafe handles one packet as rtcpPacket does, a panic costing
// that packet only (logged by recoverPacket), as in a reader of its own.
func (s *Stream) rtcpPacketSafe(raw []byte, src netip.AddrPort) {
	defer s.recoverPacket("rtcp", nil)
	s.rtcpPacket(raw, src)
}

// sockaddrPort is the address of a datagram's source.
func sockaddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}
