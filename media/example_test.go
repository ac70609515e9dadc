package media_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vnum/vnum/media"
)

// A caller offers G.729, PCMA and telephone-event on payload type 96; vnum
// answers PCMA and echoes type 96 with its fmtp.
func ExampleAnswer() {
	offer, err := media.ParseSDP([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 18 8 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	answer, audio, dtmf, err := media.Answer(offer, netip.MustParseAddr("203.0.113.5"), 20000, 42)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(offer.RemoteAddr(), audio.Name, dtmf.PT)
	fmt.Print(strings.ReplaceAll(string(answer), "\r\n", "\n"))
	// Output:
	// 192.0.2.1:4000 PCMA 96
	// v=0
	// o=vnum 42 42 IN IP4 203.0.113.5
	// s=vnum
	// c=IN IP4 203.0.113.5
	// t=0 0
	// m=audio 20000 RTP/AVP 8 96
	// a=rtpmap:8 PCMA/8000
	// a=rtpmap:96 telephone-event/8000
	// a=fmtp:96 0-15
	// a=ptime:20
	// a=sendrecv
}
