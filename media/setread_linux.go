package media

import (
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"github.com/pion/rtp"
	"golang.org/x/sys/unix"
)

// setReader reads one socket of each of many streams (their RTP sockets,
// or their RTCP sockets) on one goroutine, through an epoll set of their
// descriptors, instead of a goroutine and a read buffer per socket: a
// parked goroutine costs its stack (4 KiB at least, 8 once a packet's
// handling grew it) and its buffer for the whole of a call, and where the
// kernel relays a call's audio (Ports.UseKernel) its sockets hardly ever
// read a packet. The goroutine runs while the set holds a stream: the
// first stream added starts it, the last removed ends it. The set waits
// in the runtime's poller, as a socket read does, with no thread of its
// own; a ready socket's datagrams are read without waiting, rtpBatch at a
// time, and handled as a reader of its own handles them.
type setReader struct {
	rtcp bool // reads the streams' RTCP sockets, not their RTP ones

	mu   sync.Mutex // guards cur, next and the set's streams; held while a batch is handled
	cur  *readSet
	next uint64 // the last token given
}

// readSet is one epoll set and the streams in it, by token; its goroutine
// (run) ends when the set's file is closed. The rest is the goroutine's.
type readSet struct {
	file    *os.File // the epoll descriptor, in the runtime's poller
	epfd    int
	streams map[uint64]*Stream

	events []unix.EpollEvent
	buf    []byte
	pkt    rtp.Packet
	// recv reads one datagram into buf (recvFrom), its outcome in n, from
	// and errno: a method value made once, so that a read allocates
	// nothing.
	recv  func(fd uintptr) bool
	n     int
	from  unix.RawSockaddrAny
	errno syscall.Errno
}

// setEntry is where one socket of a stream is read when a setReader reads
// it: r is nil while it is read on a goroutine of its own.
type setEntry struct {
	r   *setReader
	tok uint64
	fd  int
	raw syscall.RawConn
}

// rtpBatch is how many datagrams one socket's turn reads at most before
// the next ready socket's: the set is level-triggered, so what is left is
// reported again.
const rtpBatch = 32

// add puts conn, one of s's sockets, in the set, starting the set's
// goroutine when it is the first, and notes it in e. An error leaves s
// out: its caller reads the socket on a goroutine of its own.
func (r *setReader) add(s *Stream, e *setEntry, conn syscall.Conn) error {
	raw, err := conn.SyscallConn()
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
		set, err := newReadSet()
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
	*e = setEntry{r: r, tok: tok, fd: fd, raw: raw}
	return nil
}

// remove takes the socket of e out of the set, before it closes. Once it
// returns none of its packets is being handled, nor will be.
func (r *setReader) remove(s *Stream, e setEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil || r.cur.streams[e.tok] != s {
		return
	}
	// The socket is still open: the descriptor is still the stream's.
	_ = unix.EpollCtl(r.cur.epfd, unix.EPOLL_CTL_DEL, e.fd, nil)
	delete(r.cur.streams, e.tok)
	r.closeIfEmpty()
}

// closeIfEmpty ends the current set when it holds no stream. r.mu is held.
func (r *setReader) closeIfEmpty() {
	if len(r.cur.streams) == 0 {
		// Closing the file wakes the set's goroutine with an error.
		_ = r.cur.file.Close()
		r.cur = nil
	}
}

func newReadSet() (*readSet, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Non-blocking, the descriptor goes into the runtime's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	set := &readSet{
		file:    os.NewFile(uintptr(epfd), "media-epoll"),
		epfd:    epfd,
		streams: map[uint64]*Stream{},
		events:  make([]unix.EpollEvent, 64),
		buf:     make([]byte, maxPacket),
	}
	set.recv = set.recvFrom
	return set, nil
}

// run waits for the set's sockets to be readable and hands what they read
// to their streams, until the set's file is closed.
func (r *setReader) run(set *readSet) {
	raw, err := set.file.SyscallConn()
	if err != nil {
		return
	}
	n := 0
	wait := func(fd uintptr) bool {
		var werr error
		n, werr = unix.EpollWait(int(fd), set.events, 0)
		// Nothing ready (or a signal): wait for the set to be readable.
		return werr == nil && n > 0
	}
	for {
		if err := raw.Read(wait); err != nil {
			return // closed: the set's last stream left
		}
		r.mu.Lock()
		for _, ev := range set.events[:n] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if s := set.streams[tok]; s != nil {
				s.readReady(set, r.rtcp)
			}
		}
		r.mu.Unlock()
	}
}

// readReady reads what one of s's sockets holds (its RTCP socket, or its
// RTP one), rtpBatch datagrams at most, without waiting, and handles each.
func (s *Stream) readReady(set *readSet, rtcp bool) {
	raw := s.rtpIn.raw
	if rtcp {
		raw = s.rtcpIn.raw
	}
	for range rtpBatch {
		if err := raw.Read(set.recv); err != nil {
			return
		}
		switch {
		case set.errno == 0 && rtcp:
			s.rtcpPacketSafe(set.buf[:set.n], sockaddrPort(&set.from))
		case set.errno == 0:
			s.rtpPacketSafe(set.buf[:set.n], sockaddrPort(&set.from), &set.pkt)
		case set.errno == syscall.EAGAIN:
			return
		default:
			// An ICMP error reported on the socket: skipped, as a reader
			// of its own skips it.
		}
	}
}

// recvFrom reads one datagram from fd into set.buf, without waiting.
func (set *readSet) recvFrom(fd uintptr) bool {
	alen := uint32(unix.SizeofSockaddrAny)
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&set.buf[0])), uintptr(len(set.buf)), 0,
		uintptr(unsafe.Pointer(&set.from)), uintptr(unsafe.Pointer(&alen)))
	set.n, set.errno = int(n), errno
	return true // never wait: the set does
}

// sockaddrPort is the address of a datagram's source.
func sockaddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// rtpPacketSafe handles one RTP datagram as the stream's own reader does
// (rtpPacket), a panic costing that packet only.
func (s *Stream) rtpPacketSafe(raw []byte, src netip.AddrPort, pkt *rtp.Packet) {
	defer s.recoverPacket("rtp", s.counts)
	s.rtpPacket(raw, src, pkt)
}

// rtcpPacketSafe handles one RTCP datagram as rtcpPacket does, a panic
// costing that packet only.
func (s *Stream) rtcpPacketSafe(raw []byte, src netip.AddrPort) {
	defer s.recoverPacket("rtcp", nil)
	s.rtcpPacket(raw, src)
}
