package media

import (
	"bytes"
	"fmt"
)

// What a session description may cost to parse. vnum uses one audio
// stream, and an answer repeats every offered media description (RFC 3264
// §6: the ones it declines with port 0), so an offer of a thousand
// streams would cost a thousand of each, parsed, kept and answered, for
// nothing.
const (
	// MaxMediaLines bounds the media descriptions (m= lines) of an SDP:
	// audio, video, a second audio and data channels of a rich softphone
	// are well below it.
	MaxMediaLines = 16
	// MaxSDPBytes bounds an SDP's size: an offer of audio and video with
	// many codecs and ICE candidates has a few kilobytes; a carrier's
	// audio offer has well under one.
	MaxSDPBytes = 16 << 10
)

var mediaLineStart = []byte("\nm=")

// MediaLines counts the media descriptions (lines starting with "m=") in
// an SDP's bytes without parsing it.
func MediaLines(b []byte) int {
	n := bytes.Count(b, mediaLineStart)
	if bytes.HasPrefix(b, mediaLineStart[1:]) {
		n++
	}
	return n
}

// checkSDPLimits refuses an SDP over MaxSDPBytes or MaxMediaLines before
// it is parsed.
func checkSDPLimits(b []byte) error {
	if len(b) > MaxSDPBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBadSDP, len(b), MaxSDPBytes)
	}
	if n := MediaLines(b); n > MaxMediaLines {
		return fmt.Errorf("%w: %d media descriptions, at most %d", ErrBadSDP, n, MaxMediaLines)
	}
	return nil
}
