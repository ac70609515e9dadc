package media

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		payload []byte
		want    Event
		err     error
	}{
		"digit 1 start":       {payload: []byte{1, 0x0A, 0x00, 0xA0}, want: Event{Digit: '1', Volume: 10, Duration: 160}},
		"hash end":            {payload: []byte{11, 0x8A, 0x03, 0x20}, want: Event{Digit: '#', End: true, Volume: 10, Duration: 800}},
		"star":                {payload: []byte{10, 0x00, 0, 0}, want: Event{Digit: '*'}},
		"D with reserved R":   {payload: []byte{15, 0x7F, 0xFF, 0xFF}, want: Event{Digit: 'D', Volume: 63, Duration: 0xFFFF}},
		"zero":                {payload: []byte{0, 0x80, 0, 0}, want: Event{Digit: '0', End: true}},
		"extra bytes ignored": {payload: []byte{9, 0, 0, 1, 0xEE}, want: Event{Digit: '9', Duration: 1}},
		"flash":               {payload: []byte{16, 0, 0, 0}, err: ErrBadEvent},
		"junk event":          {payload: []byte{200, 0, 0, 0}, err: ErrBadEvent},
		"short":               {payload: []byte{1, 0, 0}, err: ErrBadEvent},
		"empty":               {payload: nil, err: ErrBadEvent},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeEvent(tc.payload)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestEncodeEvent(t *testing.T) {
	t.Parallel()
	for _, k := range eventDigits {
		ev := Event{Digit: k, End: true, Volume: 10, Duration: 1234}
		b, err := EncodeEvent(ev)
		require.NoError(t, err)
		got, err := DecodeEvent(b)
		require.NoError(t, err)
		require.Equal(t, ev, got)
	}
	_, err := EncodeEvent(Event{Digit: 'x'})
	require.ErrorIs(t, err, ErrBadEvent)
}

// ev builds a telephone-event packet.
func ev(t testing.TB, key rune, ts uint32, seq uint16, marker, end bool, dur uint16) *rtp.Packet {
	t.Helper()
	b, err := EncodeEvent(Event{Digit: key, End: end, Volume: 10, Duration: dur})
	require.NoError(t, err)
	return &rtp.Packet{
		Header:  rtp.Header{Version: 2, Marker: marker, PayloadType: 101, SequenceNumber: seq, Timestamp: ts, SSRC: 7},
		Payload: b,
	}
}

// sippEvent is one event as SIPp's DTMF pcaps send it: a marker packet,
// continuation packets, then the end packet three times with the same
// sequence number and timestamp (RFC 4733 §2.5.1.4).
func sippEvent(t testing.TB, key rune, ts uint32, seq uint16) []*rtp.Packet {
	t.Helper()
	return []*rtp.Packet{
		ev(t, key, ts, seq, true, false, 160),
		ev(t, key, ts, seq+1, false, false, 320),
		ev(t, key, ts, seq+2, false, false, 480),
		ev(t, key, ts, seq+3, false, true, 640),
		ev(t, key, ts, seq+3, false, true, 640),
		ev(t, key, ts, seq+3, false, true, 640),
	}
}

func TestDigitDetector(t *testing.T) {
	t.Parallel()
	junk := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, Timestamp: 5}, Payload: []byte{1, 2}}
	flash := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, Timestamp: 6}, Payload: []byte{16, 0x80, 0, 0}}
	tests := map[string]struct {
		packets func(t *testing.T) []*rtp.Packet
		want    string
	}{
		"one event, end retransmitted x3": {
			packets: func(t *testing.T) []*rtp.Packet { return sippEvent(t, '5', 1000, 1) },
			want:    "5",
		},
		"marker lost": {
			packets: func(t *testing.T) []*rtp.Packet { return sippEvent(t, '7', 1000, 1)[1:] },
			want:    "7",
		},
		"only end packets": {
			packets: func(t *testing.T) []*rtp.Packet { return sippEvent(t, '#', 1000, 1)[3:] },
			want:    "#",
		},
		"same digit twice, new timestamp": {
			packets: func(t *testing.T) []*rtp.Packet {
				return append(sippEvent(t, '1', 1000, 1), sippEvent(t, '1', 2600, 7)...)
			},
			want: "11",
		},
		"extension then hash": {
			packets: func(t *testing.T) []*rtp.Packet {
				var p []*rtp.Packet
				for i, k := range "1234#" {
					p = append(p, sippEvent(t, k, uint32(1000+1600*i), uint16(1+6*i))...)
				}
				return p
			},
			want: "1234#",
		},
		"all end packets lost": {
			packets: func(t *testing.T) []*rtp.Packet {
				return append(sippEvent(t, '2', 1000, 1)[:3], sippEvent(t, '3', 2600, 7)...)
			},
			want: "23",
		},
		"end packets lost, then next marker lost": {
			packets: func(t *testing.T) []*rtp.Packet {
				return append(sippEvent(t, '2', 1000, 1)[:3], sippEvent(t, '3', 2600, 7)[1:]...)
			},
			want: "23",
		},
		"late end of previous event": {
			packets: func(t *testing.T) []*rtp.Packet {
				p := append(sippEvent(t, '4', 1000, 1), sippEvent(t, '6', 2600, 7)[:2]...)
				p = append(p, ev(t, '4', 1000, 4, false, true, 640))
				return append(p, sippEvent(t, '6', 2600, 7)[2:]...)
			},
			want: "46",
		},
		"junk and flash ignored": {
			packets: func(t *testing.T) []*rtp.Packet {
				return append([]*rtp.Packet{junk, flash, nil}, sippEvent(t, '9', 1000, 1)...)
			},
			want: "9",
		},
		"timestamp wraps": {
			packets: func(t *testing.T) []*rtp.Packet {
				return append(sippEvent(t, '8', 0xFFFFFF00, 1), sippEvent(t, '8', 0x00000500, 7)...)
			},
			want: "88",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var d DigitDetector
			var got []rune
			for _, p := range tc.packets(t) {
				if k, ok := d.Feed(p); ok {
					got = append(got, k)
				}
			}
			require.Equal(t, tc.want, string(got))
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte{1, 0x0A, 0x00, 0xA0})
	f.Add([]byte{11, 0x8A, 0x03, 0x20})
	f.Add([]byte{16, 0, 0, 0})
	f.Add([]byte{0xFF})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			require.ErrorIs(t, err, ErrBadEvent)
			return
		}
		// Whatever decodes must encode back to the same four bytes, the
		// reserved R bit aside.
		enc, err := EncodeEvent(e)
		require.NoError(t, err)
		require.Equal(t, b[0], enc[0])
		require.Equal(t, b[1]&^0x40, enc[1])
		require.Equal(t, b[2:4], enc[2:4])

		var d DigitDetector
		d.Feed(&rtp.Packet{Header: rtp.Header{Marker: b[1]&1 == 1, Timestamp: uint32(len(b))}, Payload: b})
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	payload := []byte{11, 0x8A, 0x03, 0x20}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(payload); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzReaderPath feeds arbitrary datagrams through what a stream's reader
// does with them: pion parses, then the RFC 4733 and in-band detectors and
// the relay's payload rewriting run. Nothing may panic.
func FuzzReaderPath(f *testing.F) {
	for _, p := range sippEvent(f, '5', 1000, 1) {
		b, err := p.Marshal()
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1, 0xFF, 0x7F})
	f.Add([]byte{0xA0, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1, 0x00})    // padding 0
	f.Add([]byte{0x90, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1, 0xBE, 0}) // short extension
	f.Add([]byte{0x80})
	var d DigitDetector
	tones := NewToneDetector("PCMU")
	from, to := &Stream{}, &Stream{}
	from.SetCodecs(pcmuCodec, event101)
	to.SetCodecs(pcmaCodec, event96)
	r := newRoute(from, to)
	f.Fuzz(func(t *testing.T, b []byte) {
		var pkt rtp.Packet
		if pkt.Unmarshal(b) != nil {
			return
		}
		d.Feed(&pkt)
		tones.Feed(pkt.Payload)
		before := b[1]
		r.rewrite(b, &pkt)
		require.Equal(t, before&0x80, b[1]&0x80, "marker kept")
		var out rtp.Packet
		require.NoError(t, out.Unmarshal(b), "a rewritten packet still parses")
	})
}
