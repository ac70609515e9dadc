package media

import "errors"

var (
	// ErrNoPorts means every RTP/RTCP port pair of the range is in use,
	// draining or could not be bound.
	ErrNoPorts = errors.New("media: no free rtp ports")
	// ErrBadPortRange means NewPorts was given an invalid address or range.
	ErrBadPortRange = errors.New("media: bad rtp port range")
	// ErrBadSDP means a session description could not be parsed.
	ErrBadSDP = errors.New("media: bad sdp")
	// ErrNoAudio means a session description has no usable audio stream.
	ErrNoAudio = errors.New("media: no audio stream in sdp")
	// ErrNoCodec means offer and answer have no audio codec in common.
	ErrNoCodec = errors.New("media: no common audio codec")
	// ErrBadEvent means an RFC 4733 telephone-event payload is short or
	// carries an event that is not a DTMF digit.
	ErrBadEvent = errors.New("media: bad telephone-event payload")
	// ErrNoPrompt means no prompt of that name exists in that language.
	ErrNoPrompt = errors.New("media: no such prompt")
	// ErrClosed means the stream has been closed.
	ErrClosed = errors.New("media: stream closed")
	// ErrBridged means the stream is already part of a bridge: it cannot
	// play audio or join a second bridge.
	ErrBridged = errors.New("media: stream is bridged")
	// ErrBridgeStreams means Bridge was not given two distinct streams.
	ErrBridgeStreams = errors.New("media: bridge needs two distinct streams")
	// ErrNotStarted means Bridge was called on a stream before Start.
	ErrNotStarted = errors.New("media: stream not started")
	// ErrUnsupportedCodec means Play cannot encode audio for the stream's
	// codec (only PCMU and PCMA are encoded).
	ErrUnsupportedCodec = errors.New("media: codec cannot be played")

	// errBadWAV means an embedded prompt is not 8 kHz mono 16-bit PCM WAV.
	errBadWAV = errors.New("media: bad wav")
)
