//go:build !linux

package media

import (
	"errors"
	"net"
	"net/netip"
)

// rtcpReader reads RTCP for the streams of one Ports on Linux (an epoll
// set on one goroutine); elsewhere each stream reads its RTCP socket on
// a goroutine of its own.
type rtcpReader struct{}

var errNoRTCPSet = errors.New("media: no shared rtcp reader on this system")

func (r *rtcpReader) add(*Stream) error { return errNoRTCPSet }

func (r *rtcpReader) remove(*Stream) {}

// rtcpReg is a socket's place in Linux's shared reader.
type rtcpReg struct{}

func (r *rtcpReader) forget(*rtcpReg) {}

func (r *rtcpReader) watchIdle(*net.UDPConn) (*rtcpReg, error) { return nil, errNoRTCPSet }

// park fails: a stream's RTP reader runs for the whole call.
func (r *rtcpReader) park(*Stream) error { return errNoRTCPSet }

func (r *rtcpReader) unpark(*Stream) {}

// keep the waking referenced where it is unused.
var _ = (*Stream).wakeRTP

// keep the shared handler referenced where it is unused.
var _ = (*Stream).rtcpPacket
var _ = netip.AddrPort{}
