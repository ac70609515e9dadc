// Package testwav builds WAV files for tests of the merchant's clip: good
// ones in each encoding a clip may have, and the bad ones a merchant might
// upload (another rate, two channels, too long, cut short).
package testwav

import "encoding/binary"

// WAV returns a RIFF WAVE file whose fmt chunk says format tag (1 PCM, 6
// A-law, 7 µ-law, ...), channels, rate and bits a sample, followed by the
// extra chunks as they are given (each with its own header) and a data
// chunk of n bytes counting up, so that the sound is not silence.
func WAV(tag, channels uint16, rate uint32, bits uint16, n int, extra ...[]byte) []byte {
	frame := uint32(channels) * uint32(bits) / 8
	b := []byte("RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00")
	b = binary.LittleEndian.AppendUint16(b, tag)
	b = binary.LittleEndian.AppendUint16(b, channels)
	b = binary.LittleEndian.AppendUint32(b, rate)
	b = binary.LittleEndian.AppendUint32(b, rate*frame)
	b = binary.LittleEndian.AppendUint16(b, uint16(frame))
	b = binary.LittleEndian.AppendUint16(b, bits)
	for _, c := range extra {
		b = append(b, c...)
	}
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for i := range n {
		b = append(b, byte(i*7))
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}

// Audio returns a WAV file of frames frames of audio in format tag, at
// rate, with channels channels: 16 bits a sample for PCM (1), 8 for
// A-law (6), µ-law (7) and the rest.
func Audio(tag, channels uint16, rate uint32, frames int) []byte {
	bits := uint16(8)
	if tag == 1 {
		bits = 16
	}
	return WAV(tag, channels, rate, bits, frames*int(channels*bits/8))
}

// Clip returns a WAV file of samples samples of 8 kHz mono audio in
// format tag, as a merchant's clip may be.
func Clip(tag uint16, samples int) []byte { return Audio(tag, 1, 8000, samples) }
