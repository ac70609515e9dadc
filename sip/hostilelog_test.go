package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// hostileLines returns the lines of a text log with message msg, and the
// value of each one's count attribute.
func hostileLines(t *testing.T, log, msg string) (lines []string, counts []int) {
	t.Helper()
	countAttr := regexp.MustCompile(` count=(\d+)`)
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="`+msg+`"`) && !strings.Contains(l, "msg="+msg+" ") {
			continue
		}
		lines = append(lines, l)
		m := countAttr.FindStringSubmatch(l)
		require.NotNil(t, m, "a line without count: %s", l)
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		counts = append(counts, n)
	}
	return lines, counts
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// TestHostileLogPerSource: one line per source per hostileLogEvery; the
// next line counts what came in between; sources are told apart.
func TestHostileLogPerSource(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clock := newTestClock()
	h := newHostileInput(slog.New(slog.NewTextHandler(&buf, nil)), clock.Now, nil)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.2")
	for range 1000 {
		h.report(a, "junk", "reason", "x")
	}
	h.report(b, "junk")
	lines, counts := hostileLines(t, buf.String(), "junk")
	require.Len(t, lines, 2)
	require.Equal(t, []int{1, 1}, counts)
	require.Contains(t, lines[0], "source=192.0.2.1")
	require.Contains(t, lines[1], "source=192.0.2.2", "a v4-mapped address is the v4 source")

	clock.Advance(hostileLogEvery - time.Millisecond)
	h.report(a, "junk")
	lines, _ = hostileLines(t, buf.String(), "junk")
	require.Len(t, lines, 2, "not before hostileLogEvery")

	clock.Advance(time.Millisecond)
	h.report(a, "junk")
	lines, counts = hostileLines(t, buf.String(), "junk")
	require.Len(t, lines, 3)
	require.Equal(t, 1000+1, counts[2], "999 withheld, one before the interval ended, and this one")
}

// TestHostileLogFloodBounded: a flood from spoofed sources writes at most
// hostileLogBudget lines per hostileLogEvery, remembers at most
// hostileLogSources sources, and loses no count: what was withheld is
// reported later, under "other" when the source was forgotten.
func TestHostileLogFloodBounded(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clock := newTestClock()
	h := newHostileInput(slog.New(slog.NewTextHandler(&buf, nil)), clock.Now, nil)
	const flood = 100_000
	sent := 0
	for round := range 3 {
		for i := range flood {
			h.report(netip.AddrFrom4([4]byte{10, byte(round), byte(i >> 8), byte(i)}), "junk")
			sent++
		}
		lines, _ := hostileLines(t, buf.String(), "junk")
		require.LessOrEqual(t, len(lines), (round+1)*hostileLogBudget, "round %d", round)
		h.mu.Lock()
		require.LessOrEqual(t, len(h.sources), hostileLogSources+1, "sources remembered")
		h.mu.Unlock()
		clock.Advance(hostileLogEvery)
	}
	// Quiet sources are forgotten as new ones come; the counts they had
	// not reported go to "other", whose line comes once a window has room.
	for range 3 {
		h.report(netip.MustParseAddr("192.0.2.9"), "junk")
		clock.Advance(hostileLogEvery)
		h.report(otherSources, "junk")
		sent += 2
		clock.Advance(hostileLogEvery)
	}
	h.mu.Lock()
	pending := 0
	for _, e := range h.sources {
		pending += e.pending
	}
	h.mu.Unlock()
	lines, counts := hostileLines(t, buf.String(), "junk")
	require.Equal(t, sent, sum(counts)+pending, "every message counted once")
	require.Contains(t, lines[len(lines)-1], "source=other")
}

// TestHostileLogBudget: more sources than the budget in one interval get
// their lines in the next one, with their counts.
func TestHostileLogBudget(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clock := newTestClock()
	h := newHostileInput(slog.New(slog.NewTextHandler(&buf, nil)), clock.Now, nil)
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := range hostileLogBudget + 8 {
		h.report(src(i), "junk")
	}
	lines, _ := hostileLines(t, buf.String(), "junk")
	require.Len(t, lines, hostileLogBudget)
	clock.Advance(hostileLogEvery)
	for i := hostileLogBudget; i < hostileLogBudget+8; i++ {
		h.report(src(i), "junk")
	}
	lines, counts := hostileLines(t, buf.String(), "junk")
	require.Len(t, lines, hostileLogBudget+8)
	for _, c := range counts[hostileLogBudget:] {
		require.Equal(t, 2, c)
	}
}

// TestReadMarks: a parse failure is placed at the read it came from, by
// transport, size and first bytes; one that matches no read has no
// source.
func TestReadMarks(t *testing.T) {
	t.Parallel()
	var m readMarks
	a := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5060}
	b := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 40000}
	junk := func(s string) []byte { return []byte(s + strings.Repeat("x", 40)) }
	for _, r := range []struct {
		transport string
		from      net.Addr
		data      []byte
	}{{"UDP", a, junk("aaa")}, {"TCP", b, junk("bbb")}, {"UDP", b, junk("short")}} {
		out, err := m.filter(sip.TransportReadProps{Transport: r.transport, RemoteAddr: r.from}, r.data)
		require.NoError(t, err)
		require.Equal(t, r.data, out, "the filter passes the read on")
	}
	require.Equal(t, a, m.source("udp", string(junk("aaa"))))
	require.Equal(t, b, m.source("tcp", string(junk("bbb"))))
	require.Equal(t, b, m.source("udp", string(junk("short"))))
	require.Nil(t, m.source("tcp", string(junk("aaa"))), "another transport")
	require.Nil(t, m.source("udp", string(junk("aaa"))+"y"), "another size")
	require.Nil(t, m.source("udp", string(junk("aab"))), "other bytes")
	for range markRing {
		_, _ = m.filter(sip.TransportReadProps{Transport: "UDP", RemoteAddr: b}, []byte("later"))
	}
	require.Nil(t, m.source("udp", string(junk("aaa"))), "forgotten after markRing reads")
}

func TestPayloadKind(t *testing.T) {
	t.Parallel()
	stun := "\x00\x01\x00\x00\x21\x12\xa4\x42" + strings.Repeat("\x07", 12)
	for in, want := range map[string]string{
		"\x16\x03\x01\x02\x00\x01":               "tls",
		stun:                                     "stun",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n":      "http",
		"PRI * HTTP/2.0\r\n":                     "http",
		"INVITE sip:x SIP/2.0\r\nbroken\r\n\r\n": "sip",
		"SIP/2.0 200\r\n":                        "sip",
		"hello 13800138000\r\n":                  "text",
		"\x01\x02\x03\xff junk":                  "binary",
		strings.Repeat("a", 100) + "\x00\xff":    "text", // only the first 64 bytes are looked at
	} {
		require.Equal(t, want, payloadKind(in), "%q", in)
	}
}

func TestParseFailure(t *testing.T) {
	t.Parallel()
	p := lwsTolerantParser()
	parse := func(s string) error {
		_, err := p.ParseSIP([]byte(s))
		require.Error(t, err, s)
		return err
	}
	require.Equal(t, "start_line", parseFailure(parse("HELLO 13800138000\r\n\r\n")))
	require.Equal(t, "line_ending", parseFailure(parse("INVITE sip:x@y SIP/2.0\rVia: x\r\n\r\n")))
	require.Equal(t, "truncated", parseFailure(parse("INVITE sip:x@y SIP/2.0")))
	require.Equal(t, "header", parseFailure(parse("INVITE sip:x@y SIP/2.0\r\nno colon 13800138000\r\n\r\n")))
	require.Equal(t, "too_large", parseFailure(parse(strings.Repeat("x", sip.ParseMaxMessageLength+1))))
	require.Equal(t, "body_length", parseFailure(fmt.Errorf("stream: %w", sip.ErrParseReadBodyIncomplete)))
	require.Equal(t, "truncated", parseFailure(io.ErrUnexpectedEOF))
	require.Equal(t, "unknown", parseFailure(nil))
	require.Equal(t, "header", parseFailure(errors.New("anything else")))
}

// TestSipgoRecords: sipgo's parse-failure records are reported without
// their payload, its ERRORs about messages without Via or CSeq are
// dropped (checkMessage counts those), and every other record passes.
func TestSipgoRecords(t *testing.T) {
	t.Parallel()
	var out, hostile bytes.Buffer
	h := newHostileInput(slog.New(slog.NewTextHandler(&hostile, nil)), newTestClock().Now, nil)
	log := slog.New(sipgoRecords{Handler: numberMasker{slog.NewTextHandler(&out, nil)}, h: h}).With("component", "sip")
	udp := log.With("caller", "Transport<UDP>")
	payload := "INVITE sip:13800138000@x SIP/2.0\r\nbroken\r\n\r\n"
	_, _ = h.marks.filter(sip.TransportReadProps{Transport: "UDP", RemoteAddr: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 5060}}, []byte(payload))
	udp.Error("failed to parse", "data", payload, "error", errors.New("field name with no value in header: \"13800138000\""))
	log.Error("Server tx failed to handle request", "error", errors.New("make key failed: 'Via' header not found in 13800138000"), "req", "INVITE sip:13800138000@x SIP/2.0")
	log.Error("Failed to send stateless 400 for malformed request", "error", errors.New("no via"), "req", "INVITE sip:13800138000@x SIP/2.0")
	log.Error("Server tx failed to handle request", "error", errors.New("server tx get connection failed: x"))
	udp.WithGroup("g").Debug("Keep alive CRLF received")

	require.NotContains(t, out.String(), "failed to parse")
	require.NotContains(t, out.String(), "make key failed")
	require.NotContains(t, out.String(), "stateless 400")
	require.Contains(t, out.String(), "server tx get connection failed", "other records pass")
	require.EqualValues(t, 1, h.malformed["udp"].Load())
	lines, counts := hostileLines(t, hostile.String(), malformedMsg)
	require.Len(t, lines, 1)
	require.Equal(t, []int{1}, counts)
	for _, want := range []string{"transport=udp", "source=192.0.2.7", "bytes=" + strconv.Itoa(len(payload)), "kind=sip", "reason=header"} {
		require.Contains(t, lines[0], want)
	}
	for _, leaked := range []string{"13800138000", "[number]", "broken", "data="} {
		require.NotContains(t, hostile.String()+out.String(), leaked)
	}
	require.True(t, log.Handler().Enabled(context.Background(), slog.LevelInfo))

	// Parse failures are counted where sipgo's records would be written
	// nowhere.
	quiet := slog.New(sipgoRecords{Handler: slog.DiscardHandler, h: h}).With("caller", "Transport<TCP>")
	quiet.Error("failed to parse", "data", "x", "error", errors.New("x"))
	quiet.Info("anything")
	require.EqualValues(t, 1, h.malformed["tcp"].Load())
}
