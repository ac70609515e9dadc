package sip

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// junkDatagrams are what a probe sends: noise, and text that looks like
// SIP and carries a consignee's number.
var junkDatagrams = []string{
	"INVITE sip:" + testNational + "@127.0.0.1 SIP/2.0\r\nTo " + testNational + "\r\n\r\n",
	"HELLO " + testNational + "\r\n\r\n",
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1\rFrom: " + testNational + "\r\n\r\n",
}

// TestMalformedFloodLogsBounded: a flood of messages that do not parse,
// over UDP from several sources and over TCP, is counted in full, logged
// one line per source (with how many it sent), never with the payload,
// and vnum goes on answering. A second interval gives a source its next
// line, which counts what was withheld.
func TestMalformedFloodLogsBounded(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	e := newTestEnv(t, "answer", func(o *Options) { o.Now = clock.Now })
	const perSource = 200
	sources := []string{"127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"}
	for _, ip := range sources {
		p := newRawPeer(t, e.srv, "udp", ip+":0")
		for i := range perSource {
			if i%2 == 0 {
				p.write([]byte(junkDatagrams[i/2%len(junkDatagrams)]))
				continue
			}
			b := make([]byte, 64+i)
			_, _ = rand.Read(b)
			b[0] = 0xff // neither all zeros nor a keepalive
			p.write(b)
		}
	}
	// Over TCP: a start line that is not SIP, and a message that never
	// ends (over the parser's 64 KiB): sipgo closes each connection.
	tcpSources := []string{"127.0.0.20", "127.0.0.21"}
	bad := newRawPeer(t, e.srv, "tcp", tcpSources[0]+":0")
	bad.write([]byte(junkDatagrams[1]))
	long := newRawPeer(t, e.srv, "tcp", tcpSources[1]+":0")
	long.write([]byte("OPTIONS sip:" + testNational + "@127.0.0.1 SIP/2.0\r\n"))
	for range sip.ParseMaxMessageLength / 1000 * 2 {
		if _, err := long.tcp.Write([]byte("X-Junk: " + strings.Repeat(testNational, 90) + "\r\n")); err != nil {
			break // vnum closed the connection
		}
	}
	for _, p := range []*rawPeer{bad, long} {
		require.NoError(t, p.tcp.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err := p.tcp.Read(make([]byte, 1))
		require.True(t, errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err), "vnum closes a connection it cannot frame: %v", err)
	}

	require.Eventually(t, func() bool {
		m := e.srv.MalformedMessages()
		return m["udp"] == int64(len(sources)*perSource) && m["tcp"] == 2
	}, 20*time.Second, 10*time.Millisecond, "counted: %v", e.srv.MalformedMessages())
	requireAlive(t, newRawPeer(t, e.srv, "udp", "127.0.0.1:0"))
	requireAlive(t, newRawPeer(t, e.srv, "tcp", "127.0.0.1:0"))

	logs := e.logs.String()
	lines, counts := hostileLines(t, logs, malformedMsg)
	require.Len(t, lines, len(sources)+len(tcpSources), "one line per source:\n%s", strings.Join(lines, "\n"))
	for _, ip := range append(sources, tcpSources...) {
		require.Contains(t, logs, "source="+ip+" ")
	}
	require.Equal(t, len(lines), sum(counts), "each source's first message")
	require.Contains(t, logs, "reason=too_large")
	require.Contains(t, logs, "reason=start_line")
	for _, leaked := range []string{testNational, "[number]", "failed to parse", "data="} {
		require.NotContains(t, logs, leaked)
	}

	clock.Advance(hostileLogEvery)
	newRawPeer(t, e.srv, "udp", sources[0]+":0").write([]byte(junkDatagrams[0]))
	require.Eventually(t, func() bool {
		lines, _ := hostileLines(t, e.logs.String(), malformedMsg)
		return len(lines) == len(sources)+len(tcpSources)+1
	}, 10*time.Second, 10*time.Millisecond)
	lines, counts = hostileLines(t, e.logs.String(), malformedMsg)
	require.Contains(t, lines[len(lines)-1], "source="+sources[0]+" ")
	require.Equal(t, perSource, counts[len(counts)-1], "the withheld messages and this one")
}

// TestNoViaCounted: a request without Via (sipgo answers it nothing: no
// address to answer at) is counted as malformed and logged once per
// source, not once per message at ERROR with its start line.
func TestNoViaCounted(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	p := newRawPeer(t, e.srv, "udp", "127.0.0.30:0")
	for i := range 50 {
		p.write([]byte("OPTIONS sip:" + testNational + "@127.0.0.1 SIP/2.0\r\nCall-ID: nv" + randHex() +
			"\r\nCSeq: " + string(rune('1'+i%9)) + " OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Length: 0\r\n\r\n"))
	}
	require.Eventually(t, func() bool { return e.srv.MalformedMessages()["udp"] == 50 }, 20*time.Second, 10*time.Millisecond,
		"counted: %v", e.srv.MalformedMessages())
	requireAlive(t, newRawPeer(t, e.srv, "udp", "127.0.0.1:0"))
	logs := e.logs.String()
	lines, _ := hostileLines(t, logs, malformedMsg)
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], "reason=no_via_or_cseq")
	require.NotContains(t, logs, testNational)
	require.NotContains(t, logs, "make key failed")
	require.NotContains(t, logs, "level=ERROR")
}

// isReset reports a connection reset by the peer, as closing a socket
// with unread data gives.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && bytes.Contains([]byte(op.Err.Error()), []byte("reset"))
}
