package media

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// newLegStream is newTestStream for a stream measured as leg.
func newLegStream(t testing.TB, ports *Ports, leg string, remote netip.AddrPort, audio Codec, dtmf *Codec) *Stream {
	t.Helper()
	sock, err := ports.Open()
	require.NoError(t, err)
	s := NewStream(sock, remote, audio, dtmf, nil)
	s.SetLeg(leg)
	s.Start()
	t.Cleanup(func() { s.Close() })
	return s
}

// sample returns the value of c's series whose label (any name) is
// value: a counter's count, or a histogram's number of observations.
func sample(t testing.TB, c prometheus.Collector, value string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() != value {
					continue
				}
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func histCount(t testing.TB, vec *prometheus.HistogramVec, leg string) uint64 {
	t.Helper()
	return uint64(sample(t, vec, leg))
}

// TestMetricsLegQuality: packets the caller's peer never sent reach the
// relay's count of leg a, not b's; the losses and jitter a peer reports in
// RTCP count for its leg (the growth of its cumulative count, once); the
// leg's jitter is observed once when its media closes.
func TestMetricsLegQuality(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	m := ports.Metrics()
	caller, callee := newPeer(t), newPeer(t)
	a := newLegStream(t, ports, "a", caller.addr(), pcmuCodec, event101)
	b := newLegStream(t, ports, "b", callee.addr(), pcmuCodec, event101)
	startBridge(t, a, b)

	sent := 0
	for seq := range 20 {
		if seq >= 5 && seq < 8 {
			continue // lost on the way to vnum
		}
		caller.sendRTP(a.Socket().RTPAddr(), &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(1000 + seq), Timestamp: uint32(160 * seq), SSRC: 0xA},
			Payload: make([]byte, frameSamples),
		})
		sent++
	}
	for range sent {
		callee.recvRTP(2 * time.Second)
	}
	require.Equal(t, 3.0, sample(t, m.lost, "a"))
	require.Zero(t, sample(t, m.lost, "b"))

	report := func(total uint32) {
		raw, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0xA, Reports: []rtcp.ReceptionReport{
			{SSRC: 0xB, FractionLost: 64, TotalLost: total, Jitter: 80},
		}}})
		require.NoError(t, err)
		caller.send(netip.AddrPortFrom(a.Socket().IP, uint16(a.Socket().Port+1)), raw)
	}
	report(4)
	require.Eventually(t, func() bool { return sample(t, m.rtcpLost, "a") == 4 },
		5*time.Second, 5*time.Millisecond)
	report(6)
	require.Eventually(t, func() bool { return sample(t, m.rtcpLost, "a") == 6 },
		5*time.Second, 5*time.Millisecond, "only the growth counts")
	require.Equal(t, uint64(2), histCount(t, m.rtcpFraction, "a"))
	require.Equal(t, uint64(2), histCount(t, m.rtcpJitter, "a"))
	require.Zero(t, histCount(t, m.rtcpJitter, "b"))

	require.Zero(t, histCount(t, m.jitter, "a"), "observed when the leg closes")
	require.NoError(t, a.Close())
	require.Equal(t, uint64(1), histCount(t, m.jitter, "a"))
	require.NoError(t, a.Close())
	require.Equal(t, uint64(1), histCount(t, m.jitter, "a"), "once")
}

// TestMetricsDigitsByMethod: an RFC 4733 key and an in-band key count
// under their methods, and a SIP INFO key under its own.
func TestMetricsDigitsByMethod(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	m := ports.Metrics()
	caller := newPeer(t)
	events := newLegStream(t, ports, "a", caller.addr(), pcmuCodec, event96)
	tones := newLegStream(t, ports, "a", caller.addr(), pcmaCodec, nil)

	for _, p := range sippEvent(t, '5', 1000, 10) {
		p.PayloadType = 96
		caller.sendRTP(events.Socket().RTPAddr(), p)
	}
	pcm := keyed("7", 100*time.Millisecond, 100*time.Millisecond)
	for i := 0; i+frameSamples <= len(pcm); i += frameSamples {
		caller.sendRTP(tones.Socket().RTPAddr(), &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: uint16(i), Timestamp: uint32(i), SSRC: 1},
			Payload: EncodeALaw(pcm[i : i+frameSamples]),
		})
	}
	for _, s := range []*Stream{events, tones} {
		select {
		case <-s.Digits():
		case <-time.After(2 * time.Second):
			t.Fatal("no digit")
		}
	}
	ports.CountDigit(DigitSIPInfo)
	require.Equal(t, 1.0, sample(t, m.digits, "rfc4733"))
	require.Equal(t, 1.0, sample(t, m.digits, "inband"))
	require.Equal(t, 1.0, sample(t, m.digits, "sip_info"))
}

// BenchmarkRelayMeasured is BenchmarkRelay with both streams measured as
// legs (sequence gaps, jitter): the cost of the quality metrics on the
// relay's path is the difference between the two.
func BenchmarkRelayMeasured(bm *testing.B) { benchmarkRelay(bm, "a", "b") }
