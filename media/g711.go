package media

import "math/bits"

// G.711 (ITU-T G.711) companding in its classic table-free form, after the
// public-domain Sun Microsystems g711.c. Encoding works on 16-bit linear
// samples; decoding goes through tables built once at start-up.

const (
	ulawBias = 0x84
	ulawClip = 32635
)

var (
	ulawToLinear [256]int16
	alawToLinear [256]int16
	ulawToALaw   [256]byte
	alawToULaw   [256]byte
)

func init() {
	for i := range 256 {
		ulawToLinear[i] = decodeULawSample(byte(i))
		alawToLinear[i] = decodeALawSample(byte(i))
	}
	for i := range 256 {
		ulawToALaw[i] = encodeALawSample(ulawToLinear[i])
		alawToULaw[i] = encodeULawSample(alawToLinear[i])
	}
}

func encodeULawSample(s int16) byte {
	x := int(s)
	var sign byte
	if x < 0 {
		x = -x
		sign = 0x80
	}
	x = min(x, ulawClip) + ulawBias
	// x >= ulawBias, so x>>7 is at least 1 and the exponent is in 0..7.
	exponent := bits.Len(uint(x>>7)) - 1
	mantissa := (x >> (exponent + 3)) & 0x0F
	return ^(sign | byte(exponent<<4) | byte(mantissa))
}

func decodeULawSample(u byte) int16 {
	u = ^u
	t := (int(u&0x0F) << 3) + ulawBias
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(ulawBias - t)
	}
	return int16(t - ulawBias)
}

// alawSegEnd holds the upper bound of each A-law segment for 13-bit input.
var alawSegEnd = [8]int{0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF}

func encodeALawSample(s int16) byte {
	x := int(s)
	mask := byte(0xD5)
	if x < 0 {
		mask = 0x55
		x = -x - 1
	}
	x >>= 3
	seg := 0
	for seg < len(alawSegEnd) && x > alawSegEnd[seg] {
		seg++
	}
	if seg >= len(alawSegEnd) {
		return 0x7F ^ mask
	}
	a := byte(seg << 4)
	if seg < 2 {
		a |= byte(x>>1) & 0x0F
	} else {
		a |= byte(x>>seg) & 0x0F
	}
	return a ^ mask
}

func decodeALawSample(a byte) int16 {
	a ^= 0x55
	t := int(a&0x0F) << 4
	switch seg := (a & 0x70) >> 4; seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}

// EncodeULaw encodes 16-bit linear PCM samples as G.711 µ-law, one byte per
// sample.
func EncodeULaw(pcm []int16) []byte {
	out := make([]byte, len(pcm))
	for i, s := range pcm {
		out[i] = encodeULawSample(s)
	}
	return out
}

// DecodeULaw decodes G.711 µ-law bytes to 16-bit linear PCM samples.
func DecodeULaw(b []byte) []int16 {
	out := make([]int16, len(b))
	for i, u := range b {
		out[i] = ulawToLinear[u]
	}
	return out
}

// EncodeALaw encodes 16-bit linear PCM samples as G.711 A-law, one byte per
// sample.
func EncodeALaw(pcm []int16) []byte {
	out := make([]byte, len(pcm))
	for i, s := range pcm {
		out[i] = encodeALawSample(s)
	}
	return out
}

// DecodeALaw decodes G.711 A-law bytes to 16-bit linear PCM samples.
func DecodeALaw(b []byte) []int16 {
	out := make([]int16, len(b))
	for i, a := range b {
		out[i] = alawToLinear[a]
	}
	return out
}

// transcode rewrites a G.711 payload in place from one law to the other
// using the conversion table t (ulawToALaw or alawToULaw).
func transcode(payload []byte, t *[256]byte) {
	for i, b := range payload {
		payload[i] = t[b]
	}
}
