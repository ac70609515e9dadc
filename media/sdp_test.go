package media

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// crlf turns a readable SDP with \n line ends into wire form.
func crlf(s string) []byte {
	return []byte(strings.ReplaceAll(strings.TrimLeft(s, "\n"), "\n", "\r\n"))
}

var (
	offerPCMA = crlf(`
v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 4000 RTP/AVP 8
a=rtpmap:8 PCMA/8000
`)
	offerFull = crlf(`
v=0
o=alice 2890844526 2890844526 IN IP4 192.0.2.20
s=call
c=IN IP4 192.0.2.20
t=0 0
m=audio 49170 RTP/AVP 18 0 8 96
a=rtpmap:18 G729/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-15
a=ptime:30
a=sendonly
`)
	offerVideoFirst = crlf(`
v=0
o=- 5 5 IN IP4 192.0.2.30
s=-
t=0 0
m=video 5000 RTP/AVP 99
c=IN IP4 192.0.2.31
a=rtpmap:99 H264/90000
m=audio 5002 RTP/AVP 0 101
c=IN IP4 192.0.2.30
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
`)
	offerDTMFOnly = crlf(`
v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 4000 RTP/AVP 101
a=rtpmap:101 telephone-event/8000
`)
	offerVideoOnly = crlf(`
v=0
o=- 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=video 4000 RTP/AVP 99
a=rtpmap:99 H264/90000
`)
	offerHold = crlf(`
v=0
o=- 1 2 IN IP4 192.0.2.10
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 4000 RTP/AVP 0
a=inactive
`)
	offerLinphone = crlf(`
v=0
o=bob 3456 789 IN IP4 10.0.0.8
s=Talk
c=IN IP4 10.0.0.8
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 0 8 101 98
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=rtpmap:101 telephone-event/48000
a=rtpmap:98 telephone-event/8000
a=rtcp:7079
a=rtcp-fb:* trr-int 1000
`)
	offerIPv6 = crlf(`
v=0
o=- 1 1 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 4000 RTP/AVP 0
`)
)

func TestParseSDP(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		sdp  []byte
		want *Desc
		err  error
	}{
		"pcma only": {sdp: offerPCMA, want: &Desc{
			Addr: netip.MustParseAddr("192.0.2.10"), Port: 4000, Direction: SendRecv,
			Codecs: []Codec{{PT: 8, Name: "PCMA", Rate: 8000, Channels: 1}},
		}},
		"g729 pcmu pcma telephone-event 96": {sdp: offerFull, want: &Desc{
			Addr: netip.MustParseAddr("192.0.2.20"), Port: 49170, Direction: SendOnly, Ptime: 30,
			Codecs: []Codec{
				{PT: 18, Name: "G729", Rate: 8000, Channels: 1},
				{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1},
				{PT: 8, Name: "PCMA", Rate: 8000, Channels: 1},
			},
			DTMF: &Codec{PT: 96, Name: "telephone-event", Rate: 8000, Channels: 1, Fmtp: "0-15"},
		}},
		"audio after video, media c=": {sdp: offerVideoFirst, want: &Desc{
			Addr: netip.MustParseAddr("192.0.2.30"), Port: 5002, Direction: SendRecv,
			Codecs: []Codec{{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1}},
			DTMF:   &Codec{PT: 101, Name: "telephone-event", Rate: 8000, Channels: 1, Fmtp: "0-16"},
		}},
		"opus first, two telephone-events": {sdp: offerLinphone, want: &Desc{
			Addr: netip.MustParseAddr("10.0.0.8"), Port: 7078, Direction: SendRecv,
			Codecs: []Codec{
				{PT: 96, Name: "opus", Rate: 48000, Channels: 2, Fmtp: "useinbandfec=1"},
				{PT: 97, Name: "speex", Rate: 16000, Channels: 1},
				{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1},
				{PT: 8, Name: "PCMA", Rate: 8000, Channels: 1},
			},
			DTMF: &Codec{PT: 98, Name: "telephone-event", Rate: 8000, Channels: 1},
		}},
		"hold": {sdp: offerHold, want: &Desc{
			Addr: netip.MustParseAddr("0.0.0.0"), Port: 4000, Direction: Inactive,
			Codecs: []Codec{{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1}},
		}},
		"ipv6": {sdp: offerIPv6, want: &Desc{
			Addr: netip.MustParseAddr("2001:db8::1"), Port: 4000, Direction: SendRecv,
			Codecs: []Codec{{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1}},
		}},
		"no audio":    {sdp: offerVideoOnly, err: ErrNoAudio},
		"junk":        {sdp: []byte("hello\r\nworld"), err: ErrBadSDP},
		"empty":       {sdp: nil, err: ErrBadSDP},
		"truncated":   {sdp: offerFull[:40], err: ErrBadSDP},
		"no c= line":  {sdp: crlf("\nv=0\no=- 1 1 IN IP4 x\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n"), err: ErrBadSDP},
		"hostname c=": {sdp: crlf("\nv=0\no=- 1 1 IN IP4 x\ns=-\nc=IN IP4 pbx.example\nt=0 0\nm=audio 4000 RTP/AVP 0\n"), err: ErrBadSDP},
		"bad format":  {sdp: crlf("\nv=0\no=- 1 1 IN IP4 x\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 300\n"), err: ErrBadSDP},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseSDP(tc.sdp)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			got.media, got.audio = nil, 0
			require.Equal(t, tc.want, got)
		})
	}
}

var vnumIP = netip.MustParseAddr("203.0.113.5")

func TestAnswer(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		offer    []byte
		audio    Codec
		dtmf     *Codec
		contains []string
		absent   []string
		err      error
	}{
		"pcma only": {
			offer: offerPCMA,
			audio: Codec{PT: 8, Name: "PCMA", Rate: 8000, Channels: 1},
			contains: []string{"o=vnum 42 42 IN IP4 203.0.113.5", "s=vnum", "c=IN IP4 203.0.113.5",
				"m=audio 30000 RTP/AVP 8\r\n", "a=rtpmap:8 PCMA/8000", "a=ptime:20", "a=sendrecv"},
			absent: []string{"telephone-event"},
		},
		"first g711 kept, telephone-event 96 echoed": {
			offer: offerFull,
			audio: Codec{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1},
			dtmf:  &Codec{PT: 96, Name: "telephone-event", Rate: 8000, Channels: 1, Fmtp: "0-15"},
			contains: []string{"m=audio 30000 RTP/AVP 0 96\r\n", "a=rtpmap:0 PCMU/8000",
				"a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-15", "a=recvonly"},
			absent: []string{"G729", "PCMA", "sendrecv"},
		},
		"video rejected in place": {
			offer: offerVideoFirst,
			audio: Codec{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1},
			dtmf:  &Codec{PT: 101, Name: "telephone-event", Rate: 8000, Channels: 1, Fmtp: "0-16"},
			contains: []string{"m=video 0 RTP/AVP 99\r\nm=audio 30000 RTP/AVP 0 101\r\n",
				"a=fmtp:101 0-16"},
		},
		"g711 picked after opus, telephone-event/8000 echoed": {
			offer:    offerLinphone,
			audio:    Codec{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1},
			dtmf:     &Codec{PT: 98, Name: "telephone-event", Rate: 8000, Channels: 1},
			contains: []string{"m=audio 30000 RTP/AVP 0 98\r\n", "a=rtpmap:98 telephone-event/8000"},
			absent:   []string{"opus", "speex", "48000"},
		},
		"inactive stays inactive": {
			offer:    offerHold,
			audio:    Codec{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1},
			contains: []string{"a=inactive"},
		},
		"telephone-event only": {offer: offerDTMFOnly, err: ErrNoCodec},
		"g729 only": {
			offer: crlf("\nv=0\no=- 1 1 IN IP4 x\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 18\n"),
			err:   ErrNoCodec,
		},
		"audio disabled": {
			offer: crlf("\nv=0\no=- 1 1 IN IP4 x\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 0 RTP/AVP 0\n"),
			err:   ErrNoAudio,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			offer, err := ParseSDP(tc.offer)
			require.NoError(t, err)
			b, audio, dtmf, err := Answer(offer, vnumIP, 30000, 42)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.audio, audio)
			require.Equal(t, tc.dtmf, dtmf)
			for _, s := range tc.contains {
				require.Contains(t, string(b), s)
			}
			for _, s := range tc.absent {
				require.NotContains(t, string(b), s)
			}
			// The answer must itself parse, with the same choice.
			back, err := ParseSDP(b)
			require.NoError(t, err)
			require.Equal(t, []Codec{tc.audio}, back.Codecs)
			require.Equal(t, tc.dtmf, back.DTMF)
			require.Equal(t, netip.AddrPortFrom(vnumIP, 30000), back.RemoteAddr())
		})
	}

	_, _, _, err := Answer(nil, vnumIP, 30000, 1)
	require.ErrorIs(t, err, ErrNoAudio)
	_, _, _, err = Answer(&Desc{Port: 4000, Codecs: []Codec{{PT: 8, Name: "pcma", Rate: 8000}}}, vnumIP, 30000, 1)
	require.NoError(t, err, "a hand-built Desc with a lower-case name works")
}

func TestOfferAndParseAnswer(t *testing.T) {
	t.Parallel()
	codecs, dtmf := DefaultCodecs()
	offer := Offer(netip.MustParseAddr("::ffff:203.0.113.5"), 31000, 1<<63|7, codecs, dtmf)
	require.Equal(t, string(crlf(`
v=0
o=vnum 7 7 IN IP4 203.0.113.5
s=vnum
c=IN IP4 203.0.113.5
t=0 0
m=audio 31000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
`)), string(offer))

	// The far end answers our offer: it picks PCMA and its own event type.
	desc, err := ParseSDP(offer)
	require.NoError(t, err)
	require.Equal(t, codecs, desc.Codecs)
	require.Equal(t, dtmf, desc.DTMF)

	tests := map[string]struct {
		answer []byte
		audio  Codec
		dtmf   *Codec
		err    error
	}{
		"pcma and event 96": {
			answer: crlf("\nv=0\no=- 1 1 IN IP4 x\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=audio 6000 RTP/AVP 8 96\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\n"),
			audio:  Codec{PT: 8, Name: "PCMA", Rate: 8000, Channels: 1},
			dtmf:   &Codec{PT: 96, Name: "telephone-event", Rate: 8000, Channels: 1, Fmtp: "0-15"},
		},
		"unoffered codec skipped": {
			answer: crlf("\nv=0\no=- 1 1 IN IP4 x\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=audio 6000 RTP/AVP 18 0\n"),
			audio:  Codec{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1},
		},
		"nothing offered": {
			answer: crlf("\nv=0\no=- 1 1 IN IP4 x\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=audio 6000 RTP/AVP 18\n"),
			err:    ErrNoCodec,
		},
		"rejected": {
			answer: crlf("\nv=0\no=- 1 1 IN IP4 x\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=audio 0 RTP/AVP 0\n"),
			err:    ErrNoAudio,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			answer, err := ParseSDP(tc.answer)
			require.NoError(t, err)
			audio, dtmf, err := ParseAnswer(codecs, answer)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.audio, audio)
			require.Equal(t, tc.dtmf, dtmf)
		})
	}
}

func FuzzParseSDP(f *testing.F) {
	for _, s := range [][]byte{offerPCMA, offerFull, offerLinphone, offerVideoFirst, offerDTMFOnly, offerVideoOnly, offerHold, offerIPv6, nil} {
		f.Add(s)
	}
	codecs, _ := DefaultCodecs()
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseSDP(b)
		if err != nil {
			return
		}
		ParseAnswer(codecs, d) //nolint:errcheck // only must not panic
		answer, _, _, err := Answer(d, vnumIP, 20000, 1)
		if err != nil {
			return
		}
		_, err = ParseSDP(answer)
		require.NoError(t, err, "our answer must parse:\n%s", answer)
	})
}

func TestPrefer(t *testing.T) {
	t.Parallel()
	d := &Desc{Codecs: []Codec{pcmaCodec, {PT: 18, Name: "G729", Rate: 8000, Channels: 1}, pcmuCodec}}
	d.Prefer(pcmuCodec)
	require.Equal(t, []string{"PCMU", "PCMA", "G729"}, []string{d.Codecs[0].Name, d.Codecs[1].Name, d.Codecs[2].Name})
	d.Prefer(Codec{PT: 9, Name: "G722", Rate: 8000})
	require.Equal(t, "PCMU", d.Codecs[0].Name, "a format not offered changes nothing")
}
