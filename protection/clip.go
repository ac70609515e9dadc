package protection

import (
	"encoding/binary"
	"fmt"
	"time"
)

// A merchant may upload a short clip that names it to the consignee in
// the notice ("this is ... calling"). It is checked here when it is
// uploaded, so that what the store keeps always plays.

// MaxClip is the longest clip a merchant may upload.
const MaxClip = 5 * time.Second

// ClipRate is the only sampling rate a clip may have: the telephone's.
const ClipRate = 8000

// Encoding is how a clip's samples are written, by the format tag of the
// WAV file they came in.
type Encoding uint16

// Encodings a clip may have.
const (
	// EncodingPCM is 16-bit signed little-endian linear PCM.
	EncodingPCM Encoding = 1
	// EncodingALaw is G.711 A-law, one byte a sample.
	EncodingALaw Encoding = 6
	// EncodingULaw is G.711 µ-law, one byte a sample.
	EncodingULaw Encoding = 7
)

// wavExtensible is WAVE_FORMAT_EXTENSIBLE: the format tag is then the
// first two bytes of the sub-format GUID.
const wavExtensible = 0xFFFE

// String names the encoding: pcm16, alaw or ulaw.
func (e Encoding) String() string {
	switch e {
	case EncodingPCM:
		return "pcm16"
	case EncodingALaw:
		return "alaw"
	case EncodingULaw:
		return "ulaw"
	}
	return fmt.Sprintf("format %d", uint16(e))
}

// ParseEncoding reads an encoding as String writes it.
func ParseEncoding(s string) (Encoding, error) {
	for _, e := range []Encoding{EncodingPCM, EncodingALaw, EncodingULaw} {
		if s == e.String() {
			return e, nil
		}
	}
	return 0, fmt.Errorf("%w: encoding %q: want pcm16, alaw or ulaw", ErrBadClip, s)
}

// bytesPerSample is the size of one sample in e.
func (e Encoding) bytesPerSample() int {
	if e == EncodingPCM {
		return 2
	}
	return 1
}

// Clip is a merchant's announcement: 8 kHz mono samples in one of the
// three encodings, at most MaxClip long.
type Clip struct {
	// Encoding is how Data is written.
	Encoding Encoding
	// Data are the samples as the file held them.
	Data []byte
}

// Duration returns how long the clip plays.
func (c Clip) Duration() time.Duration {
	n := len(c.Data) / c.Encoding.bytesPerSample()
	return time.Duration(n) * time.Second / ClipRate
}

// clipWant is what a clip must be, for errors.
const clipWant = "want a WAV file, 8 kHz mono, 16-bit PCM, A-law or µ-law, at most 5 s"

// ParseClip checks that b is a WAV file a merchant may upload and returns
// its samples: RIFF WAVE, 8 kHz, one channel, 16-bit PCM or 8-bit A-law or
// µ-law, between one sample and MaxClip. Anything else is ErrBadClip with
// one line saying what the file is and what is wanted.
func ParseClip(b []byte) (Clip, error) {
	bad := func(format string, args ...any) (Clip, error) {
		return Clip{}, fmt.Errorf("%w: %s; %s", ErrBadClip, fmt.Sprintf(format, args...), clipWant)
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return bad("not a WAV file")
	}
	var enc Encoding
	fmtSeen := false
	for rest := b[12:]; len(rest) >= 8; {
		id, size := string(rest[0:4]), binary.LittleEndian.Uint32(rest[4:8])
		rest = rest[8:]
		if uint64(size) > uint64(len(rest)) {
			return bad("its %q chunk is cut short", id)
		}
		body := rest[:size]
		rest = rest[min(int(size)+int(size%2), len(rest)):]
		switch id {
		case "fmt ":
			if len(body) < 16 {
				return bad("its format chunk is too short")
			}
			tag := binary.LittleEndian.Uint16(body[0:2])
			channels := binary.LittleEndian.Uint16(body[2:4])
			rate := binary.LittleEndian.Uint32(body[4:8])
			depth := binary.LittleEndian.Uint16(body[14:16])
			if tag == wavExtensible && len(body) >= 26 {
				tag = binary.LittleEndian.Uint16(body[24:26])
			}
			enc = Encoding(tag)
			switch {
			case enc != EncodingPCM && enc != EncodingALaw && enc != EncodingULaw:
				return bad("it is in WAV format %d", tag)
			case channels != 1:
				return bad("it has %d channels", channels)
			case rate != ClipRate:
				return bad("it is sampled at %d Hz", rate)
			case int(depth) != 8*enc.bytesPerSample():
				return bad("it is %s with %d bits a sample", enc, depth)
			}
			fmtSeen = true
		case "data":
			if !fmtSeen {
				return bad("its data come before its format")
			}
			c := Clip{Encoding: enc, Data: append([]byte(nil), body...)}
			switch {
			case len(body) == 0:
				return bad("it holds no sound")
			case len(body)%enc.bytesPerSample() != 0:
				return bad("its data end in half a sample")
			case c.Duration() > MaxClip:
				return bad("it lasts %.1f s", c.Duration().Seconds())
			}
			return c, nil
		}
	}
	return bad("it has no data")
}

// OrderDigits returns what the notice reads of an order id: its last four
// digits when it ends in digits (fewer when fewer end it), or "" when it
// ends otherwise. The consignee recognises their order by them; the rest
// of the id is the merchant's business.
func OrderDigits(order string) string {
	i := len(order)
	for i > 0 && len(order)-i < 4 && order[i-1] >= '0' && order[i-1] <= '9' {
		i--
	}
	return order[i:]
}
