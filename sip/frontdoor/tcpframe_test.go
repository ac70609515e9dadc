package frontdoor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// framed is a message as a phone sends it over TCP.
func framed(startLine string, headers []string, body string) string {
	return startLine + "\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n" + body
}

// optionsMsg and inviteMsg are a phone's OPTIONS and INVITE as they come
// over TCP, the INVITE with a body.
const (
	optionsMsg = "OPTIONS sip:vnum@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\n" +
		"To: <sip:vnum@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	inviteMsg = "INVITE sip:17000000001@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-2\r\nFrom: <sip:a@x>;tag=2\r\nTo: <sip:17000000001@127.0.0.1>\r\n" +
		"Call-ID: c2\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 91\r\n\r\n" +
		"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n\r\n\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)

// TestMsgFramer: the framer finds each message's end (headers, then
// Content-Length bytes of body) and each CRLF keepalive, whatever the
// reads the stream comes in; a message that has begun and not ended
// leaves it mid-message.
func TestMsgFramer(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		stream string
		ends   int  // messages and keepalives
		mid    bool // a message begun and not finished
	}{
		"nothing":                      {"", 0, false},
		"one message without body":     {optionsMsg, 1, false},
		"one message with body":        {inviteMsg, 1, false},
		"body holding CRLFCRLF":        {inviteMsg, 1, false},
		"two messages back to back":    {optionsMsg + inviteMsg, 2, false},
		"double CRLF ping":             {"\r\n\r\n", 2, false},
		"CRLF pong":                    {"\r\n", 1, false},
		"half a ping":                  {"\r", 0, false},
		"ping then message":            {"\r\n\r\n" + optionsMsg, 3, false},
		"message then ping":            {optionsMsg + "\r\n\r\n", 3, false},
		"headers not ended":            {strings.TrimSuffix(optionsMsg, "\r\n"), 0, true},
		"start line only":              {"OPTIONS sip:vnum@127.0.0.1 SIP/2.0\r\n", 0, true},
		"body short by one":            {inviteMsg[:len(inviteMsg)-1], 0, true},
		"slowloris byte":               {"O", 0, true},
		"garbage without line ends":    {strings.Repeat("x", 5000), 0, true},
		"garbage lines never ending":   {strings.Repeat("x: y\r\n", 500), 0, true},
		"bare LF is no keepalive":      {"\n", 0, true},
		"bare CR starts a message":     {"\rX", 0, true},
		"NULs start a message":         {"\x00\x00\x00", 0, true},
		"garbage ended by empty line":  {"xyz\r\n\r\n", 1, false},
		"missing Content-Length":       {framed("BYE sip:x SIP/2.0", []string{"Call-ID: c"}, ""), 1, false},
		"compact Content-Length":       {framed("INFO sip:x SIP/2.0", []string{"l: 3"}, "abc"), 1, false},
		"compact, upper case":          {framed("INFO sip:x SIP/2.0", []string{"L:3"}, "abc"), 1, false},
		"name in any case":             {framed("INFO sip:x SIP/2.0", []string{"CONTENT-length:   3  "}, "abc"), 1, false},
		"spaces before the colon":      {framed("INFO sip:x SIP/2.0", []string{"Content-Length \t: 3"}, "abc"), 1, false},
		"last Content-Length counts":   {framed("INFO sip:x SIP/2.0", []string{"Content-Length: 1", "Content-Length: 3"}, "abc"), 1, false},
		"last Content-Length, longer":  {framed("INFO sip:x SIP/2.0", []string{"Content-Length: 3", "Content-Length: 4"}, "abc"), 0, true},
		"folded Content-Length":        {framed("INFO sip:x SIP/2.0", []string{"Content-Length:", " 3"}, "abc"), 1, false},
		"folded other header":          {framed("INFO sip:x SIP/2.0", []string{"Subject: a", " 3"}, ""), 1, false},
		"lookalike names":              {framed("INFO sip:x SIP/2.0", []string{"Content-Lengthy: 3", "ll: 4", "X-Content-Length: 5", "Content-Length x: 6"}, ""), 1, false},
		"length in the start line":     {framed("l: 3 sip:x SIP/2.0", []string{"Call-ID: c"}, ""), 1, false},
		"non-numeric length":           {framed("INFO sip:x SIP/2.0", []string{"Content-Length: abc"}, ""), 1, false},
		"huge length never completes":  {framed("INFO sip:x SIP/2.0", []string{"Content-Length: 99999999999999999999999"}, "abc"), 0, true},
		"bare CR inside a header":      {framed("INFO sip:x SIP/2.0", []string{"Subject: a\rb"}, ""), 1, false},
		"CR CR LF ends a line":         {"INFO sip:x SIP/2.0\r\r\nContent-Length: 0\r\n\r\n", 1, false},
		"keepalives between messages":  {optionsMsg + "\r\n\r\n" + inviteMsg + "\r\n\r\n", 6, false},
		"message after a body":         {inviteMsg + "OPT", 1, true},
		"next message's start pending": {optionsMsg + "\r", 1, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Whole, then split at every place into two reads, then a byte
			// at a time: the answer is the same.
			var f msgFramer
			require.Equal(t, tc.ends, f.feed([]byte(tc.stream)), "whole")
			require.Equal(t, tc.mid, f.inMessage(), "whole")
			for i := 1; i < len(tc.stream); i++ {
				var f msgFramer
				ends := f.feed([]byte(tc.stream[:i]))
				ends += f.feed([]byte(tc.stream[i:]))
				require.Equal(t, tc.ends, ends, "split at %d", i)
				require.Equal(t, tc.mid, f.inMessage(), "split at %d", i)
			}
			f = msgFramer{}
			ends := 0
			for i := range len(tc.stream) {
				ends += f.feed([]byte{tc.stream[i]})
			}
			require.Equal(t, tc.ends, ends, "byte by byte")
			require.Equal(t, tc.mid, f.inMessage(), "byte by byte")
		})
	}
}

// TestMsgFramerPending: half a keepalive is pending, not a message.
func TestMsgFramerPending(t *testing.T) {
	t.Parallel()
	var f msgFramer
	require.False(t, f.pending())
	f.feed([]byte("\r"))
	require.True(t, f.pending())
	require.False(t, f.inMessage())
	f.feed([]byte("\n"))
	require.False(t, f.pending())
}

// sipgoMessages is how many messages sipgo's stream parser takes out of
// the reads, counted after each read, until it refuses the stream (when
// sipgo closes the connection).
func sipgoMessages(reads [][]byte) []int {
	par := sip.NewParser().NewSIPStream()
	out := make([]int, 0, len(reads))
	n, failed := 0, false
	for _, r := range reads {
		if !failed {
			err := par.ParseSIPStream(r, func(sip.Message) { n++ })
			failed = err != nil && !errors.Is(err, sip.ErrParseSipPartial)
		}
		out = append(out, n)
	}
	return out
}

// requireNoEndMissed: after each read the framer has found at least as
// many ends as sipgo has messages: a connection sipgo reads messages
// from is never taken for a slow one.
func requireNoEndMissed(t *testing.T, reads [][]byte) {
	t.Helper()
	want := sipgoMessages(reads)
	var f msgFramer
	ends := 0
	for i, r := range reads {
		ends += f.feed(r)
		require.GreaterOrEqual(t, ends, want[i], "read %d of %q", i, reads)
	}
}

// TestMsgFramerFollowsSipgo: on RFC 4475's torture messages, valid and
// invalid, over a stream and split anywhere into two reads, the framer
// misses no message sipgo parses.
func TestMsgFramerFollowsSipgo(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("..", "testdata", "torture", "*", "*.dat"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, name := range files {
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		// Over TCP a message carries its Content-Length; two of each in a
		// row, so that the second's start follows the first's end.
		stream := bytes.Repeat(data, 2)
		for i := 0; i <= len(stream); i += 7 {
			requireNoEndMissed(t, [][]byte{stream[:i], stream[i:]})
		}
	}
	for _, s := range []string{optionsMsg, inviteMsg, "\r\n\r\n" + optionsMsg + inviteMsg} {
		requireNoEndMissed(t, [][]byte{[]byte(s)})
	}
}

// FuzzMsgFramer: whatever the stream and wherever it is split, the framer
// misses no message sipgo parses.
func FuzzMsgFramer(f *testing.F) {
	f.Add([]byte(optionsMsg+inviteMsg), 10)
	f.Add([]byte(framed("INFO sip:x SIP/2.0", []string{"l: 3"}, "abc")), 5)
	f.Add([]byte("\r\n\r\n"+inviteMsg), 3)
	f.Fuzz(func(t *testing.T, data []byte, at int) {
		if at < 0 || at > len(data) {
			at = len(data) / 2
		}
		requireNoEndMissed(t, [][]byte{data[:at], data[at:]})
	})
}

// BenchmarkMsgFramer: what finding message ends costs per byte read, in
// reads of the size sipgo makes (32 KiB); it allocates nothing.
func BenchmarkMsgFramer(b *testing.B) {
	stream := []byte(strings.Repeat(optionsMsg+inviteMsg+"\r\n\r\n", 64))
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	var f msgFramer
	for b.Loop() {
		for p := stream; len(p) > 0; {
			n := min(len(p), 32<<10)
			f.feed(p[:n])
			p = p[n:]
		}
	}
}
