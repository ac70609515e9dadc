package media

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// BenchmarkMemoryPerCall holds memCalls bridged calls at once (two streams
// each, relaying both ways, every reader having handled a packet) and
// reports what the media of one call keeps: heap in use, goroutine stacks,
// and goroutines. vnum's resident memory per concurrent call is these
// plus the signalling's share, and the garbage collector's headroom above
// the live heap and the stacks (GOGC).
func BenchmarkMemoryPerCall(bm *testing.B) {
	const memCalls = 500
	ports := newTestPorts(bm)
	caller, callee := newPeer(bm), newPeer(bm)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 1}, Payload: make([]byte, frameSamples)}
	raw, err := pkt.Marshal()
	require.NoError(bm, err)
	var heap, stack, goroutines float64
	for range bm.N {
		before := memNow()
		g0 := runtime.NumGoroutine()
		streams := make([]*Stream, 0, 2*memCalls)
		for range memCalls {
			a := openStream(bm, ports, caller)
			b := openStream(bm, ports, callee)
			require.NoError(bm, Relay(a, b))
			require.NoError(bm, Relay(b, a))
			streams = append(streams, a, b)
		}
		// One packet each way through every call, and one RTCP packet to
		// every stream: each reader runs its whole path once.
		for i := 0; i < len(streams); i += 2 {
			caller.send(streams[i].Socket().RTPAddr(), raw)
			callee.send(streams[i+1].Socket().RTPAddr(), raw)
			caller.send(netipRTCP(streams[i]), rtcpRR)
			callee.send(netipRTCP(streams[i+1]), rtcpRR)
			require.NotNil(bm, callee.recvRTPRaw(time.Second), "a relayed packet")
			require.NotNil(bm, caller.recvRTPRaw(time.Second), "a relayed packet")
		}
		after := memNow()
		heap += float64(after.heap-before.heap) / memCalls
		stack += float64(after.stack-before.stack) / memCalls
		goroutines += float64(runtime.NumGoroutine()-g0) / memCalls
		for _, s := range streams {
			require.NoError(bm, s.Close())
		}
	}
	n := float64(bm.N)
	bm.ReportMetric(heap/n, "heap-B/call")
	bm.ReportMetric(stack/n, "stack-B/call")
	bm.ReportMetric(goroutines/n, "goroutines/call")
}

// rtcpRR is an empty RTCP receiver report (RFC 3550 §6.4.2).
var rtcpRR = []byte{0x80, 201, 0, 1, 0, 0, 0, 1}

func openStream(t testing.TB, ports *Ports, p *peer) *Stream {
	t.Helper()
	sock, err := ports.Open()
	require.NoError(t, err)
	s := NewStream(sock, p.addr(), pcmuCodec, event101, nil)
	s.Start()
	return s
}

func netipRTCP(s *Stream) netip.AddrPort {
	return rtcpFor(s.Socket().RTPAddr())
}

// recvRTPRaw returns the next datagram, or nil after timeout.
func (p *peer) recvRTPRaw(timeout time.Duration) []byte {
	b, _ := p.recv(timeout)
	return b
}

type memFigures struct{ heap, stack uint64 }

// memNow collects the garbage twice (the second sweeps what the first
// freed) and returns the heap and the stacks in use.
func memNow() memFigures {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memFigures{heap: m.HeapInuse, stack: m.StackInuse}
}
