package media

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestG711KnownValues(t *testing.T) {
	t.Parallel()
	// Reference code points from ITU-T G.711 (and Sun's g711.c).
	require.Equal(t, []byte{0xFF, 0x7F, 0x80, 0x00}, EncodeULaw([]int16{0, -1, 32767, -32768}))
	require.Equal(t, []byte{0xD5, 0x55, 0xAA, 0x2A}, EncodeALaw([]int16{0, -1, 32767, -32768}))
	require.Equal(t, []int16{0, 32124, -32124}, DecodeULaw([]byte{0xFF, 0x80, 0x00}))
	require.Equal(t, []int16{8, 32256, -32256}, DecodeALaw([]byte{0xD5, 0xAA, 0x2A}))
}

func TestG711RoundTrip(t *testing.T) {
	t.Parallel()
	laws := map[string]struct {
		enc func([]int16) []byte
		dec func([]byte) []int16
	}{
		"ulaw": {EncodeULaw, DecodeULaw},
		"alaw": {EncodeALaw, DecodeALaw},
	}
	for name, law := range laws {
		t.Run(name, func(t *testing.T) {
			for s := math.MinInt16; s <= math.MaxInt16; s += 7 {
				got := law.dec(law.enc([]int16{int16(s)}))[0]
				// Logarithmic quantisation: the error grows with the level,
				// at most half a step of the top segment (1024) plus a bit.
				limit := max(16, math.Abs(float64(s))/16)
				require.LessOrEqual(t, math.Abs(float64(got)-float64(s)), limit, "sample %d -> %d", s, got)
			}
			// Every code decodes and re-encodes to itself.
			for c := range 256 {
				code := byte(c)
				back := law.enc(law.dec([]byte{code}))[0]
				if name == "ulaw" && code == 0x7F {
					code = 0xFF // µ-law has two zeros; negative zero encodes as +0
				}
				require.Equal(t, code, back, "code %#x", c)
			}
		})
	}
}

func TestTranscodeTables(t *testing.T) {
	t.Parallel()
	pcm := DTMFTone('5', 20*1e6)
	u := EncodeULaw(pcm)
	transcode(u, &ulawToALaw)
	a := DecodeALaw(u)
	for i := range pcm {
		require.InDelta(t, pcm[i], a[i], max(32, math.Abs(float64(pcm[i]))/8))
	}
}
