package integration

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
)

// In-band DTMF (README "SIP behaviour in short": tones in PCMU/PCMA when the caller offers no
// telephone-event). sip-tester ships no tone captures, so inbandPcaps
// writes one per key: 100 ms of the key's two tones (ITU-T Q.23, about
// -10 dBm0 each) and 100 ms of silence, as PCMA (PT 8, 20 ms packets)
// with sequence numbers and timestamps running on from key to key.

var dtmfFreqs = map[rune][2]float64{
	'1': {697, 1209}, '2': {697, 1336}, '3': {697, 1477},
	'4': {770, 1209}, '5': {770, 1336}, '6': {770, 1477},
	'7': {852, 1209}, '8': {852, 1336}, '9': {852, 1477},
	'*': {941, 1209}, '0': {941, 1336}, '#': {941, 1477},
}

const (
	sampleRate   = media.SampleRate
	packetSample = 160 // 20 ms
	toneMs       = 100
	silenceMs    = 100
)

// toneAmp is each tone's peak in the captures, about -10 dBm0 (media's
// own prompts are louder: DTMFTone peaks at 0.45 of full scale per tone).
const (
	toneAmp      = 7000
	mediaToneAmp = 0.45 * math.MaxInt16
)

// toneSamples is one key: tone then silence, as linear samples.
func toneSamples(key rune) ([]int16, error) {
	tone := media.DTMFTone(key, toneMs*time.Millisecond)
	if _, ok := dtmfFreqs[key]; !ok || tone == nil {
		return nil, fmt.Errorf("no DTMF tone for key %q", key)
	}
	out := make([]int16, sampleRate*(toneMs+silenceMs)/1000)
	for i, x := range tone {
		out[i] = int16(float64(x) * toneAmp / mediaToneAmp)
	}
	return out, nil
}

// goertzel is the power of one frequency in samples.
func goertzel(samples []int16, freq float64) float64 {
	k := 2 * math.Cos(2*math.Pi*freq/sampleRate)
	var s1, s2 float64
	for _, x := range samples {
		s0 := float64(x) + k*s1 - s2
		s2, s1 = s1, s0
	}
	return s1*s1 + s2*s2 - k*s1*s2
}

// detectKey finds the key whose row and column tones are strongest.
func detectKey(samples []int16) rune {
	rows := []float64{697, 770, 852, 941}
	cols := []float64{1209, 1336, 1477}
	best := func(fs []float64) float64 {
		var bf, bp float64
		for _, f := range fs {
			if p := goertzel(samples, f); p > bp {
				bf, bp = f, p
			}
		}
		return bf
	}
	r, c := best(rows), best(cols)
	for k, f := range dtmfFreqs {
		if f[0] == r && f[1] == c {
			return k
		}
	}
	return '?'
}

// inbandPcaps writes one PCMA capture per key into dir and returns their
// names, in order.
func inbandPcaps(t *testing.T, dir, keys string) []string {
	t.Helper()
	const (
		ssrc      = 0x5eed0008
		firstSeq  = 30000
		firstTS   = 320000
		srcPort   = 49180
		dstPort   = 10000
		rtpHeader = 12
	)
	seq, ts := uint16(firstSeq), uint32(firstTS)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	names := make([]string, 0, len(keys))
	for i, key := range keys {
		samples, err := toneSamples(key)
		require.NoError(t, err)
		out := make([]byte, 0, 64*1024)
		out = binary.LittleEndian.AppendUint32(out, 0xa1b2c3d4)
		out = binary.LittleEndian.AppendUint16(out, 2)
		out = binary.LittleEndian.AppendUint16(out, 4)
		out = binary.LittleEndian.AppendUint32(out, 0)     // thiszone
		out = binary.LittleEndian.AppendUint32(out, 0)     // sigfigs
		out = binary.LittleEndian.AppendUint32(out, 65535) // snaplen
		out = binary.LittleEndian.AppendUint32(out, 1)     // Ethernet
		for p := 0; p*packetSample < len(samples); p++ {
			payload := media.EncodeALaw(samples[p*packetSample : (p+1)*packetSample])
			rtp := make([]byte, rtpHeader, rtpHeader+len(payload))
			rtp[0] = 0x80
			rtp[1] = 8 // PCMA
			if p == 0 && i == 0 {
				rtp[1] |= 0x80
			}
			binary.BigEndian.PutUint16(rtp[2:], seq)
			binary.BigEndian.PutUint32(rtp[4:], ts)
			binary.BigEndian.PutUint32(rtp[8:], ssrc)
			rtp = append(rtp, payload...)
			seq++
			ts += packetSample

			udpLen := 8 + len(rtp)
			frame := make([]byte, 0, ethHeaderLen+20+udpLen)
			frame = append(frame, make([]byte, 12)...) // MACs
			frame = append(frame, 0x08, 0x00)          // IPv4
			frame = append(frame, 0x45, 0)             // version, IHL, TOS
			frame = binary.BigEndian.AppendUint16(frame, uint16(20+udpLen))
			frame = append(frame, 0, 0, 0x40, 0, 64, 17, 0, 0) // id, DF, TTL, UDP, checksum
			frame = append(frame, 127, 0, 0, 1, 127, 0, 0, 1)
			frame = binary.BigEndian.AppendUint16(frame, srcPort)
			frame = binary.BigEndian.AppendUint16(frame, dstPort)
			frame = binary.BigEndian.AppendUint16(frame, uint16(udpLen))
			frame = append(frame, 0, 0) // UDP checksum: sipp computes it
			frame = append(frame, rtp...)

			at := start.Add(time.Duration(p) * 20 * time.Millisecond)
			out = binary.LittleEndian.AppendUint32(out, uint32(at.Unix()))
			out = binary.LittleEndian.AppendUint32(out, uint32(at.Nanosecond()/1000))
			out = binary.LittleEndian.AppendUint32(out, uint32(len(frame)))
			out = binary.LittleEndian.AppendUint32(out, uint32(len(frame)))
			out = append(out, frame...)
		}
		// a gap in the timestamps, as a phone leaves between presses
		ts += 8000
		name := fmt.Sprintf("inband%d_%c.pcap", i, key)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), out, 0o644))
		names = append(names, name)
	}
	return names
}

// TestInbandTones checks the tone captures themselves (no sipp): each
// decodes, A-law and all, to its key, and reads back as a valid capture.
func TestInbandTones(t *testing.T) {
	t.Parallel()
	require.Equal(t, []byte{0xD5}, media.EncodeALaw([]int16{0}), "A-law silence")
	dir := t.TempDir()
	const keys = "0123456789*#"
	names := inbandPcaps(t, dir, keys)
	for i, key := range keys {
		f, err := readPcap(filepath.Join(dir, names[i]))
		require.NoError(t, err)
		var samples []int16
		for _, p := range f.packets {
			rtp := p.data[p.rtpOff:]
			require.Equal(t, byte(8), rtp[1]&0x7f)
			samples = append(samples, media.DecodeALaw(rtp[rtpHeaderLen:])...)
		}
		tone := samples[:sampleRate*toneMs/1000]
		require.Equal(t, key, detectKey(tone), "key %c", key)
	}
}
