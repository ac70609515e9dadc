//go:build !linux

package media

import "net/netip"

// rtpRecv is Linux's reader of a stream's RTP socket without a buffer held
// while it waits; elsewhere the reader waits in the read itself.
type rtpRecv struct{}

// recvRTP reads the next datagram on s's RTP socket into a buffer of
// packetBufs that the caller gives back.
func (s *Stream) recvRTP() (*[]byte, int, netip.AddrPort, error) {
	bp := packetBufs.Get().(*[]byte)
	n, src, err := s.sock.RTP.ReadFromUDPAddrPort(*bp)
	if err != nil {
		packetBufs.Put(bp)
		return nil, 0, netip.AddrPort{}, err
	}
	return bp, n, src, nil
}
