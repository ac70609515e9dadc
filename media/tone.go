package media

import (
	"math"
	"strings"
	"sync"
	"time"
)

// SampleRate is the sampling rate of all PCM in this package: 8 kHz.
const SampleRate = 8000

// DTMF frequencies (ITU-T Q.23): the row tone and the column tone of a key.
var (
	dtmfRows = [4]float64{697, 770, 852, 941}
	dtmfCols = [4]float64{1209, 1336, 1477, 1633}
	dtmfKeys = [4][4]rune{
		{'1', '2', '3', 'A'},
		{'4', '5', '6', 'B'},
		{'7', '8', '9', 'C'},
		{'*', '0', '#', 'D'},
	}
)

func samples(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(d * SampleRate / time.Second)
}

// DTMFTone returns d of the dual tone of a DTMF key (0-9, *, #, A-D) at 8 kHz,
// each tone at about -7 dBFS. It returns nil for any other key.
func DTMFTone(digit rune, d time.Duration) []int16 {
	for r, row := range dtmfKeys {
		for c, k := range row {
			if k != digit {
				continue
			}
			out := make([]int16, samples(d))
			for i := range out {
				t := float64(i) / SampleRate
				v := math.Sin(2*math.Pi*dtmfRows[r]*t) + math.Sin(2*math.Pi*dtmfCols[c]*t)
				out[i] = int16(v * 0.45 * math.MaxInt16)
			}
			return out
		}
	}
	return nil
}

// ringbackCycle is one whole cadence of the ringback tone used in China:
// 450 Hz for one second, then four seconds of silence, at 8 kHz.
const ringbackCycle, ringbackOn = 5 * SampleRate, SampleRate

// ringbackTone is that cadence, computed once: every ringing call plays
// the same samples, so none of them computes or allocates its own (the
// tone was 23 % of vnum's CPU at 300 calls/s when each call made it).
var ringbackTone = sync.OnceValue(func() []int16 {
	out := make([]int16, ringbackCycle)
	for i := range ringbackOn {
		out[i] = int16(0.25 * math.MaxInt16 * math.Sin(2*math.Pi*450*float64(i)/SampleRate))
	}
	return out
})

// RingbackCycle returns one cadence (5 s) of the ringback tone, shared by
// every caller: it must not be modified. Play it in a loop while B rings.
func RingbackCycle() []int16 { return ringbackTone() }

// Ringback returns d of the ringback tone used in China: 450 Hz, one second
// on, four seconds off, at 8 kHz, in a slice of its own.
func Ringback(d time.Duration) []int16 {
	cycle := ringbackTone()
	out := make([]int16, samples(d))
	for i := 0; i < len(out); i += len(cycle) {
		copy(out[i:], cycle)
	}
	return out
}

// Goertzel block: 205 samples (25.6 ms) give bins about 39 Hz apart, enough
// to separate the DTMF frequencies, which lie 70 Hz or more apart.
const (
	toneBlock    = 205
	toneMinPower = 1e5  // mean square below this (about -40 dBFS) is silence
	toneMinShare = 0.6  // the two tones must carry this share of the energy
	toneMaxTwist = 6.31 // 8 dB between row and column tone
	toneHits     = 2    // blocks in a row for a tone (>= 40 ms)
	toneGaps     = 2    // blocks in a row of no tone end it
)

// goertzelCoef holds 2cos(2πf/fs) for the row then the column frequencies.
var goertzelCoef = func() (c [8]float64) {
	for i, f := range append(dtmfRows[:], dtmfCols[:]...) {
		c[i] = 2 * math.Cos(2*math.Pi*f/SampleRate)
	}
	return c
}()

// ToneDetector finds in-band DTMF in G.711 audio with the Goertzel
// algorithm. It emits each key once per tone: the tone must last two
// blocks (about 50 ms) and a key repeats only after a gap. It is not safe
// for concurrent use.
type ToneDetector struct {
	decode *[256]int16
	buf    [toneBlock]float64
	n      int
	cur    rune // key heard in the last blocks, 0 for none
	hits   int
	gaps   int
	done   bool // cur has been emitted
}

// NewToneDetector returns a detector for audio in the named codec, PCMU or
// PCMA. For other codecs the detector never finds a tone.
func NewToneDetector(codecName string) *ToneDetector {
	t := &ToneDetector{}
	switch strings.ToUpper(codecName) {
	case pcmu:
		t.decode = &ulawToLinear
	case pcma:
		t.decode = &alawToLinear
	}
	return t
}

// Feed takes one packet's G.711 payload and returns a key when a tone has
// just been recognised.
func (t *ToneDetector) Feed(payload []byte) (rune, bool) {
	if t.decode == nil {
		return 0, false
	}
	var key rune
	found := false
	for _, b := range payload {
		t.buf[t.n] = float64(t.decode[b])
		t.n++
		if t.n < toneBlock {
			continue
		}
		t.n = 0
		if k, ok := t.block(detectBlock(&t.buf)); ok {
			key, found = k, true
		}
	}
	return key, found
}

// block advances the tone state by one block in which key was heard (0 for
// none) and reports a key that is now due.
func (t *ToneDetector) block(key rune) (rune, bool) {
	switch {
	case key == 0:
		t.gaps++
		if t.gaps >= toneGaps {
			t.cur, t.hits, t.done = 0, 0, false
		}
		return 0, false
	case key != t.cur:
		t.cur, t.hits, t.done = key, 1, false
	default:
		t.hits++
	}
	t.gaps = 0
	if t.hits >= toneHits && !t.done {
		t.done = true
		return key, true
	}
	return 0, false
}

// detectBlock returns the DTMF key present in one block, or 0.
func detectBlock(x *[toneBlock]float64) rune {
	var energy float64
	for _, v := range x {
		energy += v * v
	}
	if energy/toneBlock < toneMinPower {
		return 0
	}
	var power [8]float64
	for i, coef := range goertzelCoef {
		var s1, s2 float64
		for _, v := range x {
			s1, s2 = v+coef*s1-s2, s1
		}
		power[i] = s1*s1 + s2*s2 - coef*s1*s2
	}
	r, c := argmax(power[:4]), argmax(power[4:])
	pr, pc := power[r], power[4+c]
	// A pure tone of amplitude A gives a Goertzel power of (A·N/2)² and an
	// energy of A²·N/2, so the share of the two tones is near 1 for DTMF
	// and far below for speech or noise.
	share := (pr + pc) / (energy * toneBlock / 2)
	if share < toneMinShare || pr > toneMaxTwist*pc || pc > toneMaxTwist*pr {
		return 0
	}
	return dtmfKeys[r][c]
}

func argmax(p []float64) int {
	best := 0
	for i := range p {
		if p[i] > p[best] {
			best = i
		}
	}
	return best
}
