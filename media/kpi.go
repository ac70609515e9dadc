package media

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
)

// DigitMethod is how a DTMF key reached vnum: the method label of
// vnum_dtmf_digits_total.
type DigitMethod string

// The ways a key reaches vnum.
const (
	// DigitRFC4733 is a telephone-event RTP packet (RFC 4733).
	DigitRFC4733 DigitMethod = "rfc4733"
	// DigitInband is a tone in the G.711 audio, detected by vnum.
	DigitInband DigitMethod = "inband"
	// DigitSIPInfo is a SIP INFO request (application/dtmf-relay or
	// application/dtmf); signalling counts it (Ports.CountDigit).
	DigitSIPInfo DigitMethod = "sip_info"
)

// Metrics are the media KPIs of one Ports' streams, for /metrics: the
// keys received by method, and the quality of each leg as the relay and
// the peers' RTCP reports see it. The relay's own figures come from the
// packets read in user space; where the kernel relays a call
// (Ports.UseKernel) its RTCP still passes through vnum, so the RTCP
// figures cover both paths.
type Metrics struct {
	digits       *prometheus.CounterVec
	lost         *prometheus.CounterVec
	jitter       *prometheus.HistogramVec
	rtcpLost     *prometheus.CounterVec
	rtcpFraction *prometheus.HistogramVec
	rtcpJitter   *prometheus.HistogramVec
}

// jitterBuckets spread from a LAN's jitter (under a millisecond) to a
// path no jitter buffer hides (half a second); a G.711 packet is 20 ms.
var jitterBuckets = []float64{.001, .002, .005, .01, .02, .03, .05, .1, .2, .5}

// lossBuckets are fractions of packets lost: 0 for a clean report (its
// own bucket), and the 1-5 % where G.711 speech degrades audibly.
var lossBuckets = []float64{0, .01, .02, .03, .05, .1, .2, .5}

func newMetrics() *Metrics {
	m := &Metrics{
		digits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "vnum", Name: "dtmf_digits_total",
			Help: "DTMF keys received, by method: rfc4733 (telephone-event RTP), inband (tones in G.711 audio), sip_info (SIP INFO).",
		}, []string{"method"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "vnum", Name: "rtp_packets_lost_total",
			Help: "RTP packets the leg's peer sent that never reached vnum, from the gaps in the sequence numbers the relay read " +
				"in user space (a call the kernel relays counts only while its packets pass through vnum), by leg: a (caller), b (callee).",
		}, []string{"leg"}),
		jitter: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "vnum", Name: "rtp_jitter_seconds",
			Help: "Interarrival jitter of the leg's incoming audio as the relay estimated it (RFC 3550 A.8) when the leg's media closed, " +
				"one observation per leg of each call that sent audio through vnum in user space, by leg.",
			Buckets: jitterBuckets,
		}, []string{"leg"}),
		rtcpLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "vnum", Name: "rtcp_packets_lost_total",
			Help: "RTP packets the leg's peer reports in its RTCP reports as lost on their way to it (the growth of the cumulative " +
				"number lost, RFC 3550 §6.4.1), by leg; the kernel path included.",
		}, []string{"leg"}),
		rtcpFraction: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "vnum", Name: "rtcp_fraction_lost",
			Help:    "Fraction of packets lost since its previous report, as each RTCP report block from the leg's peer states it, by leg.",
			Buckets: lossBuckets,
		}, []string{"leg"}),
		rtcpJitter: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "vnum", Name: "rtcp_jitter_seconds",
			Help:    "Interarrival jitter as each RTCP report block from the leg's peer states it, in seconds, by leg.",
			Buckets: jitterBuckets,
		}, []string{"leg"}),
	}
	// Every series exists from the start at zero, so that a rate over it
	// reads 0 rather than nothing before the first call.
	for _, d := range []DigitMethod{DigitRFC4733, DigitInband, DigitSIPInfo} {
		m.digits.WithLabelValues(string(d))
	}
	for _, leg := range []string{"a", "b"} {
		m.lost.WithLabelValues(leg)
		m.jitter.WithLabelValues(leg)
		m.rtcpLost.WithLabelValues(leg)
		m.rtcpFraction.WithLabelValues(leg)
		m.rtcpJitter.WithLabelValues(leg)
	}
	return m
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.digits, m.lost, m.jitter, m.rtcpLost, m.rtcpFraction, m.rtcpJitter}
}

// Metrics returns the media KPIs of p's streams.
func (p *Ports) Metrics() *Metrics {
	p.metricsOnce.Do(func() { p.metrics = newMetrics() })
	return p.metrics
}

// CountDigit counts a key that reached a call by method m outside its
// media (a SIP INFO).
func (p *Ports) CountDigit(m DigitMethod) {
	p.Metrics().digits.WithLabelValues(string(m)).Inc()
}

// maxGap is the largest jump of sequence numbers counted as packets lost;
// a larger one is a restarted sender (RFC 3550 A.1's MAX_DROPOUT).
const maxGap = 3000

// quality is what a stream measures of its leg for Metrics: leg and m
// are set before the readers start (NewStream, SetLeg), the RTP reader
// alone owns the sequence and jitter state, and reported is guarded by
// rmu (RTCP comes a packet every few seconds, from whichever reader).
// kernelMoves is bumped by the kernel path whenever a flow of the stream
// comes or goes: packets in between went through the kernel, so a gap
// across it is no loss.
type quality struct {
	leg string // "" : not measured
	m   *Metrics

	// RTP reader's.
	seen    bool
	ssrc    uint32
	seq     uint16
	moves   uint32
	transit float64 // of the last audio packet, in RTP timestamp units
	jitter  float64 // RFC 3550 A.8, in RTP timestamp units
	rate    float64 // the audio's clock rate, for jitter in seconds
	audio   bool    // an audio packet set transit

	// The cumulative loss last reported per source.
	rmu      sync.Mutex
	reported map[uint32]uint32

	kernelMoves atomic.Uint32
}

// SetLeg names the leg s is the media of ("a" the caller, "b" the
// callee) in the media metrics: a stream with no leg is not measured.
// It must be called before Start.
func (s *Stream) SetLeg(leg string) {
	s.q.leg = leg
}

// sawPacket measures one RTP packet from the peer, read at now (RTP
// reader only).
func (q *quality) sawPacket(s *Stream, pkt *rtp.Packet, now time.Time) {
	if q.leg == "" || q.m == nil {
		return
	}
	moves := q.kernelMoves.Load()
	if s.kflow.Load() != nil {
		// The kernel relays the packets between these (only keys, or
		// the handover's, come up): measure afresh once it stops.
		q.seen, q.audio = false, false
		return
	}
	if q.seen && (pkt.SSRC != q.ssrc || moves != q.moves) {
		// A flow came and went since the last packet, or the sender
		// started over.
		q.seen, q.audio = false, false
	}
	if q.seen {
		switch gap := pkt.SequenceNumber - q.seq; {
		case gap == 0 || gap >= 1<<15:
			return // a duplicate, or late: its place was counted as lost
		case gap > 1 && gap < maxGap:
			q.m.lost.WithLabelValues(q.leg).Add(float64(gap - 1))
		}
	}
	q.seen, q.ssrc, q.seq, q.moves = true, pkt.SSRC, pkt.SequenceNumber, moves
	f := s.formats.Load()
	if pkt.PayloadType != f.audio.PT || f.audio.Rate == 0 {
		return
	}
	q.rate = float64(f.audio.Rate)
	transit := float64(now.UnixNano())/1e9*q.rate - float64(pkt.Timestamp)
	if q.audio {
		d := transit - q.transit
		if d < 0 {
			d = -d
		}
		q.jitter += (d - q.jitter) / 16
	}
	q.transit, q.audio = transit, true
}

// closed observes the leg's jitter once its RTP reader ends.
func (q *quality) closed() {
	if q.leg == "" || q.m == nil || q.rate == 0 {
		return
	}
	q.m.jitter.WithLabelValues(q.leg).Observe(q.jitter / q.rate)
}

// maxReported bounds the sources whose reported loss a stream follows:
// a call has one or two (the peer's, vnum's prompts).
const maxReported = 8

// sawRTCP measures the report blocks of an RTCP packet from the peer. A
// packet that does not parse is left to the relay to drop.
func (q *quality) sawRTCP(s *Stream, raw []byte) {
	if q.leg == "" || q.m == nil {
		return
	}
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		return
	}
	rate := float64(s.formats.Load().audio.Rate)
	if rate == 0 {
		rate = SampleRate
	}
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.ReceiverReport:
			q.report(p.Reports, rate)
		case *rtcp.SenderReport:
			q.report(p.Reports, rate)
		}
	}
}

func (q *quality) report(blocks []rtcp.ReceptionReport, rate float64) {
	q.rmu.Lock()
	defer q.rmu.Unlock()
	for _, b := range blocks {
		q.m.rtcpFraction.WithLabelValues(q.leg).Observe(float64(b.FractionLost) / 256)
		q.m.rtcpJitter.WithLabelValues(q.leg).Observe(float64(b.Jitter) / rate)
		total := b.TotalLost
		if total > 0x7FFFFF {
			total = 0 // negative (duplicates): nothing lost
		}
		last, known := q.reported[b.SSRC]
		if !known && len(q.reported) >= maxReported {
			continue
		}
		if q.reported == nil {
			q.reported = make(map[uint32]uint32, 2)
		}
		q.reported[b.SSRC] = total
		if total > last {
			q.m.rtcpLost.WithLabelValues(q.leg).Add(float64(total - last))
		}
	}
}

// countDigit counts a key the stream detected.
func (q *quality) countDigit(m DigitMethod) {
	if q.m != nil {
		q.m.digits.WithLabelValues(string(m)).Inc()
	}
}

// metricsOf is the Metrics a stream of sock reports to (nil: none).
func metricsOf(sock *Socket) *Metrics {
	if sock.pool == nil {
		return nil
	}
	return sock.pool.Metrics()
}
