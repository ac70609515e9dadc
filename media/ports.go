package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DrainTime is how long a closed port pair stays out of the pool before it
// is given to another call, so that late RTP from the old call never reaches
// the next one. NewPorts reads it once.
var DrainTime = time.Second

// Ports allocates RTP/RTCP port pairs on one IP address: RTP on an even port,
// RTCP on the odd port above it (RFC 3550 §11). It is safe for concurrent use.
type Ports struct {
	ip       netip.Addr
	min, max int // first even RTP port, last usable RTP port
	drain    time.Duration
	now      func() time.Time

	mu       sync.Mutex
	next     int               // where the next search starts, so ports rotate
	open     map[int]bool      // RTP ports of open sockets
	draining map[int]time.Time // RTP port -> when it may be reused
}

// NewPorts returns an allocator for port pairs on ip within [min, max]. The
// range must hold at least one even port whose odd neighbour is also in it.
func NewPorts(ip string, min, max int) (*Ports, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("%w: ip %q: %w", ErrBadPortRange, ip, err)
	}
	first := min + min%2
	if min < 1 || max > 65535 || first+1 > max {
		return nil, fmt.Errorf("%w: %d-%d holds no rtp/rtcp pair", ErrBadPortRange, min, max)
	}
	return &Ports{
		ip:       addr.Unmap(),
		min:      first,
		max:      max - 1 - (max-1)%2,
		drain:    DrainTime,
		now:      time.Now,
		next:     first,
		open:     make(map[int]bool),
		draining: make(map[int]time.Time),
	}, nil
}

// Socket is one bound RTP/RTCP pair taken from Ports.
type Socket struct {
	// RTP is the socket bound to IP:Port.
	RTP *net.UDPConn
	// RTCP is the socket bound to IP:Port+1.
	RTCP *net.UDPConn
	// Port is the RTP port; RTCP uses Port+1.
	Port int
	// IP is the address both sockets are bound to.
	IP netip.Addr

	pool *Ports
	once sync.Once
	err  error
}

// Open binds the next free port pair. Pairs that are open, draining or that
// fail to bind (another process holds them) are skipped; ErrNoPorts is
// returned when no pair of the range can be bound.
func (p *Ports) Open() (*Socket, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	pairs := (p.max-p.min)/2 + 1
	for range pairs {
		port := p.next
		p.next += 2
		if p.next > p.max {
			p.next = p.min
		}
		if p.open[port] {
			continue
		}
		if until, ok := p.draining[port]; ok {
			if now.Before(until) {
				continue
			}
			delete(p.draining, port)
		}
		rtp, rtcp, err := p.bind(port)
		if err != nil {
			continue
		}
		p.open[port] = true
		return &Socket{RTP: rtp, RTCP: rtcp, Port: port, IP: p.ip, pool: p}, nil
	}
	return nil, ErrNoPorts
}

func (p *Ports) bind(port int) (rtp, rtcp *net.UDPConn, err error) {
	rtp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port))))
	if err != nil {
		return nil, nil, err
	}
	rtcp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port+1))))
	if err != nil {
		return nil, nil, errors.Join(err, rtp.Close())
	}
	return rtp, rtcp, nil
}

// InUse returns the number of port pairs held by open sockets. Pairs that
// are draining after Close are not counted.
func (p *Ports) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.open)
}

// release moves port from open to draining.
func (p *Ports) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.open, port)
	if p.drain > 0 {
		p.draining[port] = p.now().Add(p.drain)
	}
}

// Close closes both sockets and returns the pair to the pool, where it
// drains for DrainTime before reuse. It is idempotent.
func (s *Socket) Close() error {
	s.once.Do(func() {
		s.err = errors.Join(s.RTP.Close(), s.RTCP.Close())
		if s.pool != nil {
			s.pool.release(s.Port)
		}
	})
	return s.err
}

// RTPAddr returns the local RTP address, the one to put in SDP.
func (s *Socket) RTPAddr() netip.AddrPort {
	return netip.AddrPortFrom(s.IP, uint16(s.Port))
}
