package record_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/media/record"
)

// BenchmarkRelayRecording is the relay's cost per packet, through real
// sockets on loopback (sender → stream A → stream B → receiver, in
// windows of 32 packets), for a call with recording off (no tap: the
// relay's check finds none) and for a recorded call (each packet handed
// to a Writer as well, which writes it off the relay's path). Compare
// the two with farm-bench --vs on a shared machine.
func BenchmarkRelayRecording(b *testing.B) {
	for _, recorded := range []bool{false, true} {
		name := "off"
		if recorded {
			name = "on"
		}
		b.Run(name, func(b *testing.B) { benchRelay(b, recorded) })
	}
}

func benchRelay(b *testing.B, recorded bool) {
	ports, err := media.NewPorts("127.0.0.1", 0, 0)
	require.NoError(b, err)
	sender, receiver := listen(b), listen(b)
	codecs, dtmf := media.DefaultCodecs()
	stream := func(remote netip.AddrPort) *media.Stream {
		sock, err := ports.Open()
		require.NoError(b, err)
		s := media.NewStream(sock, remote, codecs[0], dtmf, nil)
		s.Start()
		b.Cleanup(func() { _ = s.Close(); _ = sock.Close() })
		return s
	}
	a := stream(sender.LocalAddr().(*net.UDPAddr).AddrPort())
	z := stream(receiver.LocalAddr().(*net.UDPAddr).AddrPort())
	if recorded {
		w, err := record.Create(filepath.Join(b.TempDir(), "call.wav"), time.Now(), record.Options{Queue: 1 << 14})
		require.NoError(b, err)
		a.SetTap(w.Tap(record.Caller))
		z.SetTap(w.Tap(record.Callee))
		b.Cleanup(func() { require.NoError(b, w.Close()) })
	}
	require.NoError(b, media.Relay(a, z))
	require.NoError(b, media.Relay(z, a))

	to := a.Socket().RTPAddr()
	buf := make([]byte, 1500)
	const window = 32
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 1}, Payload: make([]byte, 160)}
	raw, err := pkt.Marshal()
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	lost := 0
	for i := 0; i < b.N; i += window {
		n := min(window, b.N-i)
		for k := range n {
			// Each packet 20 ms after the one before, as a phone sends.
			binary.BigEndian.PutUint16(raw[2:], uint16(i+k))
			binary.BigEndian.PutUint32(raw[4:], uint32((i+k)*160))
			if _, err := sender.WriteToUDPAddrPort(raw, to); err != nil {
				b.Fatal(err)
			}
		}
		for range n {
			_ = receiver.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := receiver.ReadFromUDPAddrPort(buf); err != nil {
				lost++
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(lost), "lost")
}

// listen is a UDP socket on loopback, closed at the end of the benchmark.
func listen(b *testing.B) *net.UDPConn {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(b, err)
	b.Cleanup(func() { _ = c.Close() })
	return c
}
