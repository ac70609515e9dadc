package media

import (
	"errors"
	"net"
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
// at least) and its buffer for the whole of a call. The same set watches
// the RTP sockets whose packets the kernel relays (park): their readers
// end while nothing comes up to them, and a datagram that does starts one
// again. The goroutine runs while the set holds a socket: the first added
// starts it, the last removed ends it.
type rtcpReader struct {
	mu   sync.Mutex // guards cur, next and the sets' maps; held while a stream's RTCP is handled
	cur  *rtcpSet
	next uint64 // the last token given
}

// rtcpSet is one epoll set and the sockets in it, by token: the streams
// whose RTCP it reads, and those whose RTP socket it watches for their
// reader (parked); its goroutine (run) ends when the set's file is closed.
type rtcpSet struct {
	file    *os.File // the epoll descriptor, in the runtime's poller
	epfd    int
	streams map[uint64]*Stream
	parked  map[uint64]*Stream
	// idle are the RTCP sockets of pairs between calls (Ports keep a
	// released pair's sockets): still in the set, their descriptors by
	// token, for the pair's next stream to take without a system call;
	// what comes to them meanwhile is read and dropped.
	idle map[uint64]int
}

// rtcpReg is an RTCP socket's place in the shared reader's set. It lasts
// as long as the socket is open, across the calls its pair serves:
// add and remove only move it between the set's streams and idle
// sockets, and forget takes it out before the socket closes.
type rtcpReg struct {
	set *rtcpSet
	tok uint64
	fd  int
}

// rtcpBatch is how many datagrams one stream's turn reads at most before
// the next ready stream's: the set is level-triggered, so what is left is
// reported again.
const rtcpBatch = 8

// add puts s's RTCP socket in the set, starting the set's goroutine when
// it is the first. An error leaves s out: its caller reads s on a
// goroutine of its own.
func (r *rtcpReader) add(s *Stream) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg := s.sock.rtcpReg; reg != nil && reg.set == r.cur {
		// Still in the set from the pair's last call.
		delete(r.cur.idle, reg.tok)
		r.cur.streams[reg.tok] = s
		s.rtcpTok, s.rtcpFD = reg.tok, reg.fd
		return nil
	}
	fd, err := socketFD(s.sock.RTCP)
	if err != nil {
		return err
	}
	tok, err := r.watch(fd, unix.EPOLLIN)
	if err != nil {
		return err
	}
	r.cur.streams[tok] = s
	s.rtcpTok, s.rtcpFD = tok, fd
	s.sock.rtcpReg = &rtcpReg{set: r.cur, tok: tok, fd: fd}
	return nil
}

// watchIdle puts the RTP socket c of a pair going idle in the set, with
// the idle RTCP sockets: what comes to it is read and dropped until its
// pair is taken again (forget takes it out).
func (r *rtcpReader) watchIdle(c *net.UDPConn) (*rtcpReg, error) {
	fd, err := socketFD(c)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	tok, err := r.watch(fd, unix.EPOLLIN)
	if err != nil {
		return nil, err
	}
	r.cur.idle[tok] = fd
	return &rtcpReg{set: r.cur, tok: tok, fd: fd}, nil
}

// forget takes a socket out of the set it is in, before the socket
// closes or (an idle RTP socket) its pair is taken again. reg may be nil
// (never added).
func (r *rtcpReader) forget(reg *rtcpReg) {
	if reg == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != reg.set {
		return // that set ended, and the socket's place with it
	}
	_, idle := r.cur.idle[reg.tok]
	s, reading := r.cur.streams[reg.tok]
	if !idle && (!reading || s.sock.rtcpReg != reg) {
		return
	}
	// A stream still reading it is one whose socket was closed before the
	// stream: it reads nothing more.
	_ = unix.EpollCtl(r.cur.epfd, unix.EPOLL_CTL_DEL, reg.fd, nil)
	delete(r.cur.idle, reg.tok)
	delete(r.cur.streams, reg.tok)
	r.closeIfEmpty()
}

// park puts s's RTP socket in the set until a datagram arrives on it (at
// once if one is waiting): s's RTP reader is ending, the kernel relaying
// its packets, and the set's goroutine starts one again (wakeRTP) for
// whatever comes up to the socket (a stranger's packets, the keys
// watched, the call's own once its flow is gone). An error leaves s out:
// its reader goes on.
func (r *rtcpReader) park(s *Stream) error {
	fd, err := socketFD(s.sock.RTP)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	tok, err := r.watch(fd, unix.EPOLLIN|unix.EPOLLONESHOT)
	if err != nil {
		return err
	}
	r.cur.parked[tok] = s
	s.rtpTok, s.rtpFD = tok, fd
	return nil
}

// unpark takes s's RTP socket out of the set if it is there, before the
// socket closes. Once it returns the set starts no reader for s.
func (r *rtcpReader) unpark(s *Stream) { r.drop(s, true) }

// watch adds fd to the current set (made, with its goroutine, when there
// is none) for events, under a new token. r.mu is held.
func (r *rtcpReader) watch(fd int, events uint32) (uint64, error) {
	if r.cur == nil {
		set, err := newRTCPSet()
		if err != nil {
			return 0, err
		}
		r.cur = set
		go r.run(set)
	}
	r.next++
	tok := r.next
	ev := unix.EpollEvent{Events: events, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	if err := unix.EpollCtl(r.cur.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.closeIfEmpty()
		return 0, err
	}
	return tok, nil
}

// socketFD is c's descriptor, for as long as c is open.
func socketFD(c syscall.Conn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// remove takes s off its RTCP socket, before the stream ends: the socket
// stays in the set, idle, until its pair's next stream takes it (add) or
// it closes (forget). Once remove returns no packet of s is being
// handled, nor will be.
func (r *rtcpReader) remove(s *Stream) { r.drop(s, false) }

// drop takes s's RTP socket (rtp) out of the current set, or s off its
// RTCP socket (see remove), if the set holds it, and ends an empty set.
// The socket is still open: its descriptor is s's.
func (r *rtcpReader) drop(s *Stream, rtp bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return
	}
	in, tok, fd := r.cur.streams, s.rtcpTok, s.rtcpFD
	if rtp {
		in, tok, fd = r.cur.parked, s.rtpTok, s.rtpFD
	}
	if in[tok] != s {
		return
	}
	delete(in, tok)
	if !rtp {
		r.cur.idle[tok] = fd
		return
	}
	_ = unix.EpollCtl(r.cur.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	r.closeIfEmpty()
}

// closeIfEmpty ends the current set when it holds no socket. r.mu is held.
func (r *rtcpReader) closeIfEmpty() {
	if len(r.cur.streams) == 0 && len(r.cur.parked) == 0 && len(r.cur.idle) == 0 {
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
	return &rtcpSet{file: os.NewFile(uintptr(epfd), "rtcp-epoll"), epfd: epfd,
		streams: map[uint64]*Stream{}, parked: map[uint64]*Stream{}, idle: map[uint64]int{}}, nil
}

// run waits for the set's sockets to be readable and hands what they read
// to their streams, or wakes their RTP readers, until the set's file is
// closed.
func (r *rtcpReader) run(set *rtcpSet) {
	raw, err := set.file.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 64)
	buf := make([]byte, maxPacket)
	var woken []*Stream
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
			} else if s := set.parked[tok]; s != nil {
				// Out of the set while its socket is surely open (Close
				// unparks before it closes the socket).
				_ = unix.EpollCtl(set.epfd, unix.EPOLL_CTL_DEL, s.rtpFD, nil)
				delete(set.parked, tok)
				woken = append(woken, s)
			} else if fd, ok := set.idle[tok]; ok {
				dropWaiting(fd)
			}
		}
		if r.cur == set {
			r.closeIfEmpty()
		}
		r.mu.Unlock()
		// Outside r.mu: a stream parks holding its lc, then r.mu.
		for i, s := range woken {
			s.wakeRTP()
			woken[i] = nil
		}
		woken = woken[:0]
	}
}

// readRTCPReady reads what s's RTCP socket holds, rtcpBatch datagrams at
// most, without waiting.
func (s *Stream) readRTCPReady(buf []byte) {
	if s.sock.closed.Load() {
		// Its pair is going back to the pool (or its socket was closed
		// before the stream): what comes is dropped, not left to be
		// reported again and again.
		dropWaiting(s.rtcpFD)
		return
	}
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

// dropWaiting reads and drops what waits on the socket fd, rtcpBatch
// datagrams at most (the set reports the rest again).
func dropWaiting(fd int) {
	for range rtcpBatch {
		if dropOne(fd) == unix.EAGAIN {
			return
		}
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
