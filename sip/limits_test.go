package sip

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// costlyRequest is a request from a raw peer with extra header lines
// after its own Via and a body (Content-Length filled in).
func costlyRequest(method, ruri string, extra []string, body string) string {
	lines := []string{
		method + " " + ruri + " SIP/2.0",
		"Via: {via}",
	}
	lines = append(lines, extra...)
	lines = append(lines,
		"Max-Forwards: 70",
		"From: <sip:17100000000@{local}>;tag="+randHex(),
		"To: <"+ruri+">",
		"Call-ID: "+randHex(),
		"CSeq: 1 "+method,
		"Contact: <sip:raw@{local}>",
	)
	if body != "" {
		lines = append(lines, "Content-Type: application/sdp")
	}
	return strings.Join(lines, "\r\n") + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// repeated is n header lines made by line(i).
func repeated(n int, line func(i int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = line(i)
	}
	return out
}

// proxyVia is the Via a proxy on loopback adds.
func proxyVia(i int) string {
	return fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKp%d", 20000+i, i)
}

// sdpWith is an audio offer with n media descriptions and pad bytes of
// attributes.
func sdpWith(n, pad int) string {
	s := "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	for i := range n {
		s += fmt.Sprintf("m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", 30000+2*i)
	}
	for len(s) < pad {
		s += "a=x-pad:" + strings.Repeat("p", 60) + "\r\n"
	}
	return s
}

// TestCostlyMessagesRefused: a request over one of vnum's limits on what
// a message may cost is answered with the limit's status and a Warning
// naming it, over UDP (refused at the socket when its header fields are
// too many, statelessly) and over TCP (refused by the guard), counted by
// limit; requests just within the limits are served as ever.
func TestCostlyMessagesRefused(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	uri := "sip:" + testHost + "@" + e.vnum.String()
	for _, tc := range []struct {
		name    string
		msg     func() string
		status  int
		limit   string
		warning string
	}{
		{"500 Via lines", func() string { return costlyRequest("INVITE", uri, repeated(500, proxyVia), sdpWith(1, 0)) },
			513, limitSameHeader, "more than 71 header fields of one name"},
		{"Via values on one line", func() string {
			vias := repeated(100, func(i int) string { return strings.TrimPrefix(proxyVia(i), "Via: ") })
			return costlyRequest("OPTIONS", uri, []string{"Via: " + strings.Join(vias, ", ")}, "")
		}, 513, limitSameHeader, "more than 71 header fields of one name"},
		{"300 header fields", func() string {
			return costlyRequest("OPTIONS", uri, repeated(300, func(i int) string { return fmt.Sprintf("X-Junk-%d: %d", i, i) }), "")
		}, 513, limitHeaderFields, "more than 256 header fields"},
		{"80 of one name", func() string {
			return costlyRequest("OPTIONS", uri, repeated(80, func(i int) string { return "Subject: " + strconv.Itoa(i) }), "")
		}, 513, limitSameHeader, "more than 71 header fields of one name"},
		{"compact forms count as their names", func() string {
			return costlyRequest("OPTIONS", uri, repeated(72, func(i int) string { return "s: " + strconv.Itoa(i) }), "")
		}, 513, limitSameHeader, "more than 71 header fields of one name"},
		{"a 20 KiB body", func() string { return costlyRequest("INVITE", uri, nil, sdpWith(1, 20<<10)) },
			413, limitBody, "body over 16384 bytes"},
		{"17 media descriptions", func() string { return costlyRequest("INVITE", uri, nil, sdpWith(media.MaxMediaLines+1, 0)) },
			488, limitMediaLines, "more than 16 media descriptions"},
		{"71 Vias: within", func() string { return costlyRequest("OPTIONS", uri, repeated(maxSameHeader-1, proxyVia), "") },
			200, "", ""},
		{"250 header fields: within", func() string {
			return costlyRequest("OPTIONS", uri, repeated(240, func(i int) string { return fmt.Sprintf("X-Junk-%d: %d", i, i) }), "")
		}, 200, "", ""},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+" "+network, func(t *testing.T) {
				before := e.srv.OverLimit()
				p := newRawPeer(t, e.srv, network, "127.0.0.1:0")
				p.send(tc.msg())
				require.Equal(t, tc.status, p.final(5*time.Second), "answered:\n%.2000s", p.received())
				after := e.srv.OverLimit()
				if tc.limit == "" {
					require.Equal(t, before, after)
					return
				}
				// A long response may come in several reads.
				want := `Warning: 399 vnum "` + tc.warning + `"`
				require.Eventually(t, func() bool { return strings.Contains(p.received(), want) }, 5*time.Second, 10*time.Millisecond,
					"no %s in:\n%s", want, p.received()[max(0, len(p.received())-600):])
				require.Equal(t, before[tc.limit]+1, after[tc.limit])
			})
		}
	}
	require.Zero(t, e.srv.Panics())
	requireAlive(t, newRawPeer(t, e.srv, "udp", "127.0.0.1:0"))
	lines, _ := hostileLines(t, e.logs.String(), overLimitMsg)
	require.Len(t, lines, 1, "one line for the one source")
	require.Contains(t, lines[0], "limit=same_header")
	e.requireCallBridges()
}

// TestStatelessRefusalACKDropped: the ACK of a 513 sent at the socket is
// dropped there (its To tag says so), and the refusal of a retransmission
// is the same response.
func TestStatelessRefusalACKDropped(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	p := newRawPeer(t, e.srv, "udp", "127.0.0.1:0")
	uri := "sip:" + testHost + "@" + e.vnum.String()
	msg := costlyRequest("INVITE", uri, repeated(100, proxyVia), sdpWith(1, 0))
	via := "SIP/2.0/UDP " + p.local.String() + ";branch=z9hG4bK" + randHex() + ";rport"
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "{via}", via), "{local}", p.local.String())
	p.write([]byte(msg))
	require.Equal(t, 513, p.final(5*time.Second))
	first := p.received()
	p.reset()
	p.write([]byte(msg))
	require.Equal(t, 513, p.final(5*time.Second))
	require.Equal(t, first, p.received(), "a stateless UAS answers a retransmission alike (RFC 3261 §8.2.7)")
	res := inviteFinal(p, "1")
	require.NotNil(t, res)
	tag, _ := res.To().Params.Get("tag")
	require.True(t, strings.HasPrefix(tag, frontdoor.StatelessTagPrefix), tag)
	require.Len(t, res.GetHeaders("Via"), maxSameHeader, "the Vias it kept")
	p.write([]byte("ACK " + uri + " SIP/2.0\r\nVia: " + via + "\r\nMax-Forwards: 70\r\n" +
		res.From().String() + "\r\n" + res.To().String() + "\r\n" + res.CallID().String() + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"))
	requireAlive(t, newRawPeer(t, e.srv, "udp", "127.0.0.1:0"))
	require.EqualValues(t, 2, e.srv.OverLimit()[limitSameHeader])
	require.Zero(t, e.srv.MalformedMessages()["udp"])
}

// TestRawOverLimit pins how header fields are counted before parsing: as
// sipgo makes them, a comma-separated Via, Contact, Route or Record-Route
// value each, a folded line as part of its field.
func TestRawOverLimit(t *testing.T) {
	t.Parallel()
	head := "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
	for _, tc := range []struct {
		name string
		msg  string
		want string
	}{
		{"small", head + "Via: a, b\r\nSubject: a, b, c\r\n\r\n", ""},
		{"71 Vias", head + strings.Repeat("Via: SIP/2.0/UDP h\r\n", 71) + "\r\n", ""},
		{"72 Vias", head + strings.Repeat("Via: SIP/2.0/UDP h\r\n", 72) + "\r\n", limitSameHeader},
		{"72 compact Vias", head + strings.Repeat("v : SIP/2.0/UDP h\r\n", 72) + "\r\n", limitSameHeader},
		{"Vias by comma", head + "Via: h" + strings.Repeat(", h", 71) + "\r\n\r\n", limitSameHeader},
		{"Vias folded", head + "Via: h\r\n" + strings.Repeat(" , h\r\n", 71) + "\r\n", limitSameHeader},
		{"commas elsewhere", head + "Subject: " + strings.Repeat("a,", 500) + "\r\n\r\n", ""},
		{"257 fields", head + strings.Repeat("X: 1\r\n", 257) + "\r\n", limitHeaderFields},
		{"Contacts by comma", head + "Contact: <sip:a>" + strings.Repeat(", <sip:a>", 256) + "\r\n\r\n", limitHeaderFields},
		{"the body is not headers", head + "Content-Length: 4000\r\n\r\n" + strings.Repeat("a=x\r\n", 800), ""},
	} {
		over, ok := rawOverLimit([]byte(tc.msg))
		require.Equal(t, tc.want != "", ok, tc.name)
		require.Equal(t, tc.want, over.limit, tc.name)
	}
}

// TestCostlyMessagesHeapBounded: hundreds of the messages a probe found
// costly (500 Via header fields, 12,000 tiny header fields, 1,000 media
// descriptions) leave the heap where it was once refused: nothing of them
// stays for the transactions' 32 s. Without the limits, 500 INVITEs of
// 500 Vias kept about 100 MB here (176 MB in the probe that found it).
// Not parallel: the heap is the process's.
func TestCostlyMessagesHeapBounded(t *testing.T) {
	e := newTestEnv(t, "answer", nil)
	uri := "sip:" + testHost + "@" + e.vnum.String()
	tiny := repeated(12000, func(int) string { return "X:1" })
	for _, p := range []*rawPeer{newRawPeer(t, e.srv, "udp", "127.0.0.1:0"), newRawPeer(t, e.srv, "tcp", "127.0.0.1:0")} {
		p.send(costlyRequest("OPTIONS", uri, nil, "")) // warm up: the first connection and transaction
		require.Equal(t, 200, p.final(5*time.Second))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	type burst struct {
		network string
		n       int
		msg     func() string
	}
	bursts := []burst{
		{"udp", 500, func() string { return costlyRequest("INVITE", uri, repeated(500, proxyVia), sdpWith(1, 0)) }},
		{"tcp", 200, func() string { return costlyRequest("INVITE", uri, repeated(500, proxyVia), sdpWith(1, 0)) }},
		{"tcp", 30, func() string { return costlyRequest("OPTIONS", uri, tiny, "") }},
		{"tcp", 50, func() string { return costlyRequest("INVITE", uri, nil, sdpWith(1000, 0)) }},
		{"udp", 200, func() string { return costlyRequest("INVITE", uri, nil, sdpWith(300, 0)) }},
	}
	total := 0
	for _, b := range bursts {
		total += b.n
	}
	refused := func() int64 {
		var n int64
		for _, c := range e.srv.OverLimit() {
			n += c
		}
		return n
	}
	for _, b := range bursts {
		p := newRawPeer(t, e.srv, b.network, "127.0.0.1:0")
		// Over UDP a burst of 30 KB datagrams would overflow the socket's
		// buffers on a busy machine (a datagram dropped by the kernel is
		// never refused): UDP goes in windows the server has counted.
		window := b.n
		if b.network == "udp" {
			window = 25
		}
		for sent := 0; sent < b.n; {
			base := refused()
			k := min(window, b.n-sent)
			for range k {
				p.send(b.msg())
			}
			sent += k
			require.Eventually(t, func() bool { return refused()-base == int64(k) }, 60*time.Second, 20*time.Millisecond,
				"%s: %d of %d refused by the server", b.network, refused()-base, k)
		}
		if b.network == "tcp" {
			require.Eventually(t, func() bool { return limitRefusals(p) == b.n }, 60*time.Second, 20*time.Millisecond,
				"%s: %d of %d refusals received", b.network, limitRefusals(p), b.n)
		}
		p.reset()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use %d MB before, %d MB after %d costly messages", before.HeapInuse>>20, after.HeapInuse>>20, total)
	require.Less(t, grown, int64(16<<20), "the refused messages stay in memory")
	requireAlive(t, newRawPeer(t, e.srv, "udp", "127.0.0.1:0"))
}

// limitRefusals counts the responses p received that refuse a message over a
// limit (413, 488, 513), without a regular expression over everything
// received at each look: the responses to hundreds of requests with
// hundreds of Vias are megabytes.
func limitRefusals(p *rawPeer) int {
	got := "\n" + p.received()
	return strings.Count(got, "\nSIP/2.0 413 ") + strings.Count(got, "\nSIP/2.0 488 ") + strings.Count(got, "\nSIP/2.0 513 ")
}

// benchInvite is an INVITE as a carrier sends it.
var benchInvite = []byte(strings.NewReplacer("{via}", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-carrier-1;rport",
	"{local}", "198.51.100.7:5060").Replace(costlyRequest("INVITE", "sip:17000000001@192.0.2.1:5060",
	[]string{"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-proxy-1", "Record-Route: <sip:198.51.100.7;lr>",
		"P-Asserted-Identity: <sip:+8613700137000@198.51.100.7>", "Supported: 100rel, timer", "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"},
	sdpWith(1, 0))))

// BenchmarkReadPathChecks is what vnum adds to every SIP datagram before
// sipgo parses it: the read mark and the count of header fields. Compare
// BenchmarkParseInvite, sipgo's parse of the same datagram.
func BenchmarkReadPathChecks(b *testing.B) {
	var m readMarks
	props := sip.TransportReadProps{Transport: "UDP", RemoteAddr: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5060}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.filter(props, benchInvite); err != nil {
			b.Fatal(err)
		}
		if _, over := rawOverLimit(benchInvite); over {
			b.Fatal("over")
		}
	}
}

// BenchmarkParseInvite is sipgo's parse of the datagram
// BenchmarkReadPathChecks looks at.
func BenchmarkParseInvite(b *testing.B) {
	p := lwsTolerantParser()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ParseSIP(benchInvite); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawOverLimitSlow is the count of a datagram with more lines
// than any limit, read line by line.
func BenchmarkRawOverLimitSlow(b *testing.B) {
	msg := []byte(costlyRequest("OPTIONS", "sip:x@192.0.2.1", repeated(200, func(i int) string { return "X-A: " + strconv.Itoa(i) }), ""))
	b.ReportAllocs()
	for b.Loop() {
		rawOverLimit(msg)
	}
}
