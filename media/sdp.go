package media

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// Codec is one RTP payload format of an audio stream.
type Codec struct {
	// PT is the RTP payload type number.
	PT uint8
	// Name is the encoding name as in a=rtpmap, e.g. "PCMU".
	Name string
	// Rate is the RTP clock rate in Hz.
	Rate uint32
	// Channels is the number of audio channels, 1 unless stated.
	Channels int
	// Fmtp holds the format parameters of a=fmtp, e.g. "0-16".
	Fmtp string
}

// Directions of a media stream (RFC 3264 §5.1).
const (
	SendRecv = "sendrecv"
	SendOnly = "sendonly"
	RecvOnly = "recvonly"
	Inactive = "inactive"
)

const (
	telephoneEvent = "telephone-event"
	pcmu           = "PCMU"
	pcma           = "PCMA"
	defaultPtime   = 20
	sdpUser        = "vnum"
)

// Desc is what vnum needs from a session description: the first audio
// stream.
type Desc struct {
	// Addr is the connection address of the audio stream (media c= line,
	// or the session c= line). 0.0.0.0 means on hold (RFC 3264 §8.4).
	Addr netip.Addr
	// Port is the RTP port; 0 means the stream is rejected or disabled.
	Port int
	// Codecs lists the audio codecs in offer order, telephone-event excluded.
	Codecs []Codec
	// DTMF is the telephone-event/8000 format, nil when not offered.
	DTMF *Codec
	// Direction is sendrecv, sendonly, recvonly or inactive.
	Direction string
	// Ptime is the packet time in ms from a=ptime, 0 when not given.
	Ptime int

	// media keeps every m= line of a parsed description, so that an answer
	// can reject the non-audio ones in place (RFC 3264 §6).
	media []mediaLine
	audio int // index of the audio stream in media
}

// mediaLine is the part of an m= line an answer needs to reject it.
type mediaLine struct {
	media   string
	protos  []string
	formats []string
}

// RemoteAddr returns where the stream's RTP goes: Addr and Port.
func (d *Desc) RemoteAddr() netip.AddrPort {
	return netip.AddrPortFrom(d.Addr, uint16(d.Port))
}

// staticCodecs are the RFC 3551 §6 audio payload types that an SDP may list
// without a=rtpmap and that pion does not already know.
var staticCodecs = map[uint8]Codec{
	rtp.PayloadTypeGSM:  {PT: rtp.PayloadTypeGSM, Name: "GSM", Rate: 8000, Channels: 1},
	rtp.PayloadTypeG723: {PT: rtp.PayloadTypeG723, Name: "G723", Rate: 8000, Channels: 1},
	rtp.PayloadTypeCN:   {PT: rtp.PayloadTypeCN, Name: "CN", Rate: 8000, Channels: 1},
	rtp.PayloadTypeG729: {PT: rtp.PayloadTypeG729, Name: "G729", Rate: 8000, Channels: 1},
}

// ParseSDP parses a session description and returns its first audio stream
// that has a port (or the first audio stream when all are disabled). Errors
// wrap ErrBadSDP (also for an SDP over MaxSDPBytes or MaxMediaLines) or
// ErrNoAudio.
func ParseSDP(b []byte) (*Desc, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadSDP)
	}
	if err := checkSDPLimits(b); err != nil {
		return nil, err
	}
	var s sdp.SessionDescription
	if err := s.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	audio := -1
	desc := &Desc{}
	for i, md := range s.MediaDescriptions {
		desc.media = append(desc.media, mediaLine{
			media:   md.MediaName.Media,
			protos:  md.MediaName.Protos,
			formats: md.MediaName.Formats,
		})
		if md.MediaName.Media != "audio" || !isRTP(md.MediaName.Protos) {
			continue
		}
		if audio < 0 || (s.MediaDescriptions[audio].MediaName.Port.Value == 0 && md.MediaName.Port.Value != 0) {
			audio = i
		}
	}
	if audio < 0 {
		return nil, ErrNoAudio
	}
	desc.audio = audio
	md := s.MediaDescriptions[audio]
	if err := desc.fill(&s, md); err != nil {
		return nil, err
	}
	return desc, nil
}

// fill sets the exported fields of d from the audio stream md of s.
func (d *Desc) fill(s *sdp.SessionDescription, md *sdp.MediaDescription) error {
	d.Port = md.MediaName.Port.Value
	if d.Port < 0 || d.Port > 65535 {
		return fmt.Errorf("%w: port %d", ErrBadSDP, d.Port)
	}
	conn := md.ConnectionInformation
	if conn == nil {
		conn = s.ConnectionInformation
	}
	if conn == nil || conn.Address == nil {
		return fmt.Errorf("%w: audio stream has no c= line", ErrBadSDP)
	}
	addr, err := netip.ParseAddr(conn.Address.Address)
	if err != nil {
		return fmt.Errorf("%w: c= address %q", ErrBadSDP, conn.Address.Address)
	}
	d.Addr = addr.Unmap()

	// Codec lookups use a description holding only this m= line, because
	// pion merges the rtpmaps of all m= lines.
	only := sdp.SessionDescription{MediaDescriptions: []*sdp.MediaDescription{md}}
	known := only.GetCodecMap()
	for _, f := range md.MediaName.Formats {
		pt, err := strconv.ParseUint(f, 10, 8)
		if err != nil || pt > 127 {
			return fmt.Errorf("%w: payload type %q", ErrBadSDP, f)
		}
		c, ok := codecFor(uint8(pt), known)
		if !ok {
			continue // a dynamic type without a=rtpmap is unusable
		}
		if strings.EqualFold(c.Name, telephoneEvent) {
			if d.DTMF == nil || (d.DTMF.Rate != 8000 && c.Rate == 8000) {
				d.DTMF = &c
			}
			continue
		}
		d.Codecs = append(d.Codecs, c)
	}

	d.Direction = direction(md.Attributes)
	if d.Direction == "" {
		d.Direction = direction(s.Attributes)
	}
	if d.Direction == "" {
		d.Direction = SendRecv
	}
	if v, ok := md.Attribute("ptime"); ok {
		if p, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && p > 0 {
			d.Ptime = p
		}
	}
	return nil
}

func codecFor(pt uint8, known map[uint8]sdp.Codec) (Codec, bool) {
	if c, ok := known[pt]; ok && c.Name != "" {
		channels := 1
		if n, err := strconv.Atoi(c.EncodingParameters); err == nil && n > 0 {
			channels = n
		}
		return Codec{PT: pt, Name: c.Name, Rate: c.ClockRate, Channels: channels, Fmtp: c.Fmtp}, true
	}
	c, ok := staticCodecs[pt]
	return c, ok
}

func isRTP(protos []string) bool {
	return slices.Contains(protos, "RTP")
}

func direction(attrs []sdp.Attribute) string {
	for _, a := range attrs {
		switch a.Key {
		case SendRecv, SendOnly, RecvOnly, Inactive:
			return a.Key
		}
	}
	return ""
}

// answerDirection is the direction an answer takes for an offered one
// (RFC 3264 §6.1).
func answerDirection(offered string) string {
	switch offered {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	case Inactive:
		return Inactive
	default:
		return SendRecv
	}
}

// IsG711 reports whether c is PCMU or PCMA at 8 kHz.
func (c Codec) IsG711() bool {
	return c.Rate == 8000 && (strings.EqualFold(c.Name, pcmu) || strings.EqualFold(c.Name, pcma))
}

// sameFormat reports whether a and b are the same encoding, whatever their
// payload type numbers.
func sameFormat(a, b Codec) bool {
	return strings.EqualFold(a.Name, b.Name) && a.Rate == b.Rate && max(a.Channels, 1) == max(b.Channels, 1)
}

// DefaultCodecs returns what vnum offers: PCMU (0) and PCMA (8), and
// telephone-event on payload type 101 for events 0-16.
func DefaultCodecs() ([]Codec, *Codec) {
	return []Codec{
			{PT: rtp.PayloadTypePCMU, Name: pcmu, Rate: 8000, Channels: 1},
			{PT: rtp.PayloadTypePCMA, Name: pcma, Rate: 8000, Channels: 1},
		},
		&Codec{PT: 101, Name: telephoneEvent, Rate: 8000, Channels: 1, Fmtp: "0-16"}
}

// Prefer moves the offered codec of c's format, if any, to the front of
// d.Codecs, so that the answer to a re-offer keeps the codec the session
// already uses (RFC 3264 §8.3.2: a re-offer need not change anything) and
// a relay converting to it stays right.
func (d *Desc) Prefer(c Codec) {
	i := slices.IndexFunc(d.Codecs, func(o Codec) bool { return sameFormat(o, c) })
	if i <= 0 {
		return
	}
	pick := d.Codecs[i]
	copy(d.Codecs[1:i+1], d.Codecs[:i])
	d.Codecs[0] = pick
}

// Answer builds the RFC 3264 answer to offer, receiving on ip:port. It takes
// the first offered G.711 codec (PCMU or PCMA), keeps the offer's payload
// type numbers and echoes the offered telephone-event payload type and fmtp.
// Other offered streams are rejected with port 0. It returns ErrNoAudio when
// the offer's audio stream is disabled and ErrNoCodec when no G.711 codec is
// offered.
func Answer(offer *Desc, ip netip.Addr, port int, sessID uint64) (sdpBytes []byte, audio Codec, dtmf *Codec, err error) {
	return AnswerVersion(offer, ip, port, sessID, sessID)
}

// AnswerVersion is Answer for a re-offer within an established session
// (hold, session refresh): the o= line keeps sessID and carries version,
// which the caller increments whenever the answer changes (RFC 3264 §8).
func AnswerVersion(offer *Desc, ip netip.Addr, port int, sessID, version uint64) (sdpBytes []byte, audio Codec, dtmf *Codec, err error) {
	ip = ip.Unmap()
	if offer == nil || offer.Port == 0 {
		return nil, Codec{}, nil, ErrNoAudio
	}
	i := slices.IndexFunc(offer.Codecs, Codec.IsG711)
	if i < 0 {
		return nil, Codec{}, nil, ErrNoCodec
	}
	audio = offer.Codecs[i]
	if offer.DTMF != nil {
		d := *offer.DTMF
		dtmf = &d
	}
	s := session(ip, sessID)
	s.Origin.SessionVersion = version &^ (1 << 63)
	am := audioMedia(port, []Codec{audio}, dtmf, answerDirection(offer.Direction))
	if len(offer.media) == 0 {
		s.WithMedia(am)
	}
	for j, m := range offer.media {
		if j == offer.audio {
			s.WithMedia(am)
			continue
		}
		s.WithMedia(&sdp.MediaDescription{MediaName: sdp.MediaName{
			Media:   m.media,
			Port:    sdp.RangedPort{Value: 0},
			Protos:  m.protos,
			Formats: m.formats,
		}})
	}
	return marshal(s), audio, dtmf, nil
}

// Offer builds an offer receiving on ip:port with codecs in order, then dtmf
// when not nil, a=ptime:20 and a=sendrecv.
func Offer(ip netip.Addr, port int, sessID uint64, codecs []Codec, dtmf *Codec) []byte {
	ip = ip.Unmap()
	s := session(ip, sessID)
	s.WithMedia(audioMedia(port, codecs, dtmf, SendRecv))
	return marshal(s)
}

// ParseAnswer checks the answer to an offer of the codecs offered and
// returns the first audio codec of the answer that was offered, and the
// answer's telephone-event format (nil when absent). It returns ErrNoAudio
// when the answer rejects the audio stream and ErrNoCodec when it holds no
// offered codec.
func ParseAnswer(offered []Codec, answer *Desc) (audio Codec, dtmf *Codec, err error) {
	if answer == nil || answer.Port == 0 {
		return Codec{}, nil, ErrNoAudio
	}
	for _, c := range answer.Codecs {
		if slices.ContainsFunc(offered, func(o Codec) bool { return sameFormat(o, c) }) {
			if answer.DTMF != nil {
				d := *answer.DTMF
				dtmf = &d
			}
			return c, dtmf, nil
		}
	}
	return Codec{}, nil, ErrNoCodec
}

func session(ip netip.Addr, sessID uint64) *sdp.SessionDescription {
	// RFC 4566 §5.2: sess-id and sess-version fit in 63 bits.
	id := sessID &^ (1 << 63)
	return &sdp.SessionDescription{
		Origin: sdp.Origin{
			Username:       sdpUser,
			SessionID:      id,
			SessionVersion: id,
			NetworkType:    "IN",
			AddressType:    addrType(ip),
			UnicastAddress: ip.String(),
		},
		SessionName:           sdpUser,
		ConnectionInformation: connection(ip),
		TimeDescriptions:      []sdp.TimeDescription{{}},
	}
}

func connection(ip netip.Addr) *sdp.ConnectionInformation {
	return &sdp.ConnectionInformation{
		NetworkType: "IN",
		AddressType: addrType(ip),
		Address:     &sdp.Address{Address: ip.String()},
	}
}

func audioMedia(port int, codecs []Codec, dtmf *Codec, dir string) *sdp.MediaDescription {
	md := &sdp.MediaDescription{
		MediaName: sdp.MediaName{
			Media:  "audio",
			Port:   sdp.RangedPort{Value: port},
			Protos: []string{"RTP", "AVP"},
		},
	}
	for _, c := range append(slices.Clone(codecs), deref(dtmf)...) {
		channels := uint16(0)
		if c.Channels > 1 {
			channels = uint16(c.Channels)
		}
		md.WithCodec(c.PT, c.Name, c.Rate, channels, c.Fmtp)
	}
	return md.WithValueAttribute("ptime", strconv.Itoa(defaultPtime)).WithPropertyAttribute(dir)
}

func deref(c *Codec) []Codec {
	if c == nil {
		return nil
	}
	return []Codec{*c}
}

func addrType(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		return "IP6"
	}
	return "IP4"
}

func marshal(s *sdp.SessionDescription) []byte {
	// pion's Marshal has no failure path; it returns an error only for
	// interface compatibility.
	b, err := s.Marshal()
	if err != nil {
		return nil
	}
	return b
}
