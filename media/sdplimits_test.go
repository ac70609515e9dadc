package media

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// offerWith is an SDP of n audio media descriptions, the first on a port,
// padded with attributes to at least pad bytes.
func offerWith(n, pad int) []byte {
	var b strings.Builder
	b.WriteString("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n")
	for i := range n {
		fmt.Fprintf(&b, "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", 40000+2*i)
	}
	for b.Len() < pad {
		b.WriteString("a=x-pad:" + strings.Repeat("p", 60) + "\r\n")
	}
	return []byte(b.String())
}

// TestSDPLimits: ParseSDP takes an offer of MaxMediaLines media
// descriptions and refuses one more, or an SDP over MaxSDPBytes, as bad
// SDP before parsing it.
func TestSDPLimits(t *testing.T) {
	t.Parallel()
	d, err := ParseSDP(offerWith(MaxMediaLines, 0))
	require.NoError(t, err)
	require.Equal(t, 40000, d.Port)
	_, err = ParseSDP(offerWith(MaxMediaLines+1, 0))
	require.ErrorIs(t, err, ErrBadSDP)
	require.ErrorContains(t, err, "17 media descriptions")
	_, err = ParseSDP(offerWith(1, MaxSDPBytes+1))
	require.ErrorIs(t, err, ErrBadSDP)
	_, err = ParseSDP(offerWith(1, MaxSDPBytes-100))
	require.NoError(t, err)
	require.Equal(t, 2, MediaLines([]byte("m=audio 1 RTP/AVP 0\nm=video 2 RTP/AVP 96\n")), "bare LF lines too")
	require.Zero(t, MediaLines([]byte("v=0\r\na=x:m=1\r\n")))
}
