package sip

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// The fuzzed message may name placeholders, which each iteration fills in:
// {via} a Via for the sending socket (fresh branch, rport), {local} that
// socket's address, {vnum} the server's, {callid}, {fromtag}, {totag} and
// {cseq} those of a call in progress that the server answered in early
// media (so re-INVITE, INFO, BYE and CANCEL reach a dialog, not a 481),
// {clen} the length of the body after the blank line.
var fuzzSeeds = []string{
	// A new call from the trunk to X: the IVR answers in early media.
	"INVITE sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n" +
		"From: <sip:13700137000@{local}>;tag=fz1\r\nTo: <sip:" + testHost + "@{vnum}>\r\nCall-ID: fz-{branch}\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:fz@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {clen}\r\n\r\n" + fuzzSDP("sendrecv"),
	// X-E dialled directly: B is dialled (the carrier is busy).
	"INVITE sip:" + testHost + "-" + testExt + "@{vnum};transport=udp SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n" +
		"From: \"Courier\" <sip:+8613700137000@{local}>;tag=fz2\r\nTo: <sip:" + testHost + "-" + testExt + "@{vnum}>\r\n" +
		"Call-ID: fz-{branch}\r\nCSeq: 7 INVITE\r\nContact: <sip:fz@{local}>\r\nContent-Type: application/sdp\r\n" +
		"Content-Length: {clen}\r\n\r\n" + fuzzSDP("sendrecv"),
	// A re-INVITE putting the call on hold.
	"INVITE sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n" +
		"From: <sip:13700137000@{local}>;tag={fromtag}\r\nTo: <sip:" + testHost + "@{vnum}>;tag={totag}\r\nCall-ID: {callid}\r\n" +
		"CSeq: {cseq} INVITE\r\nContact: <sip:fz@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {clen}\r\n\r\n" + fuzzSDP("sendonly"),
	// An UPDATE without a body (a session refresh).
	"UPDATE sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n" +
		"From: <sip:13700137000@{local}>;tag={fromtag}\r\nTo: <sip:" + testHost + "@{vnum}>;tag={totag}\r\nCall-ID: {callid}\r\n" +
		"CSeq: {cseq} UPDATE\r\nContact: <sip:fz@{local}>\r\nContent-Length: 0\r\n\r\n",
	// A digit as SIP INFO.
	"INFO sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n" +
		"From: <sip:13700137000@{local}>;tag={fromtag}\r\nTo: <sip:" + testHost + "@{vnum}>;tag={totag}\r\nCall-ID: {callid}\r\n" +
		"CSeq: {cseq} INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: {clen}\r\n\r\nSignal=5\r\nDuration=160\r\n",
	// The caller hangs up.
	"BYE sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n" +
		"From: <sip:13700137000@{local}>;tag={fromtag}\r\nTo: <sip:" + testHost + "@{vnum}>;tag={totag}\r\nCall-ID: {callid}\r\n" +
		"CSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n",
	// REGISTER without credentials, then with a digest that cannot be right.
	"REGISTER sip:{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{vnum}>;tag=fz3\r\n" +
		"To: <sip:alice@{vnum}>\r\nCall-ID: fz-{branch}\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{local}>;expires=60\r\n" +
		"Expires: 3600\r\nContent-Length: 0\r\n\r\n",
	"REGISTER sip:{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{vnum}>;tag=fz4\r\n" +
		"To: <sip:alice@{vnum}>\r\nCall-ID: fz-{branch}\r\nCSeq: 2 REGISTER\r\nContact: <sip:alice@{local}>\r\n" +
		"Authorization: Digest username=\"alice\", realm=\"vnum\", nonce=\"abc\", uri=\"sip:{vnum}\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"x\"\r\n" +
		"Content-Length: 0\r\n\r\n",
	// OPTIONS, a stray ACK, a CANCEL of the call in progress, a MESSAGE.
	"OPTIONS sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:fz@{local}>;tag=fz5\r\n" +
		"To: <sip:" + testHost + "@{vnum}>\r\nCall-ID: fz-{branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
	"ACK sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:13700137000@{local}>;tag={fromtag}\r\n" +
		"To: <sip:" + testHost + "@{vnum}>;tag={totag}\r\nCall-ID: {callid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
	"CANCEL sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:13700137000@{local}>;tag={fromtag}\r\n" +
		"To: <sip:" + testHost + "@{vnum}>\r\nCall-ID: {callid}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
	"MESSAGE sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:13700137000@{local}>;tag=fz6\r\n" +
		"To: <sip:" + testHost + "@{vnum}>\r\nCall-ID: fz-{branch}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {clen}\r\n\r\nhello",
}

// fuzzSDP is an audio offer on a loopback port nobody listens on.
func fuzzSDP(direction string) string {
	return "v=0\r\no=fz 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=" + direction + "\r\n"
}

// fuzzMaxCalls is how many calls the fuzzed messages may leave running
// before an iteration waits for them to end: calls that a CANCEL did not
// end run until the IVR gives up, and must not pile up.
const fuzzMaxCalls = 8

// fuzzCallsEnd is how long a call may take to end: a refused call is held
// until its final response is ACKed or Timer H fires (64·T1 = 32 s, RFC 3261
// §17.2.1), and a fuzzed INVITE's final may come after its iteration.
const fuzzCallsEnd = 40 * time.Second

// fuzzNoAnswer is how long an iteration waits for the server to answer
// an INVITE at all before taking it for one the server dropped: vnum
// sends 100 Trying at once, and over loopback it comes in a few
// milliseconds. An INVITE answered later is not CANCELled; its call ends
// when the IVR gives up (fuzzMaxCalls bounds how many may wait for that).
const fuzzNoAnswer = 50 * time.Millisecond

// fuzzMaxGoroutines bounds the goroutines above the count after setup: a
// few dozen per call in progress, and nothing that outlives its message.
const fuzzMaxGoroutines = 40 * fuzzMaxCalls

// maxDatagram is the largest UDP payload over IPv4 (65,535 less the IP
// and UDP headers).
const maxDatagram = 65507

var (
	toTagOf183  = regexp.MustCompile(`(?s)SIP/2\.0 183 .*?\r\nTo:[^\r\n]*;tag=([^;\r\n> ]+)`)
	ipv4Literal = regexp.MustCompile(`\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}`)
	ipv6Literal = regexp.MustCompile(`\[[0-9A-Fa-f:.]*\]`)
)

// FuzzHandlers feeds raw bytes to a running server as a SIP message, over
// UDP and over TCP, and asserts after each that the server still answers
// OPTIONS on both, recovered no panic, and does not pile up calls or
// goroutines. One server serves every iteration of a fuzzing process. The
// seeds are a well-formed message of each method the handlers take and the
// RFC 4475 torture messages.
//
// An iteration takes a few milliseconds (a new INVITE a few more, until
// it is CANCELled and ACKed; one nobody answers fuzzNoAnswer). The
// server's own goroutines make the coverage of one input vary a little
// between runs, so with go test's default -fuzzminimizetime (60 s per new
// input) the fuzzer spends nearly all its time minimizing what it found:
// make fuzz passes -fuzzminimizetime 1x (scripts/fuzz.sh), which keeps a
// new input only when one run more widens coverage again.
func FuzzHandlers(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	for _, dir := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", "torture", dir, "*.dat"))
		require.NoError(f, err)
		for _, file := range files {
			b, err := os.ReadFile(file)
			require.NoError(f, err)
			// Their example addresses become loopback ones: the server
			// sends nothing off this host.
			b = ipv4Literal.ReplaceAll(b, []byte("127.0.0.1"))
			f.Add(ipv6Literal.ReplaceAll(b, []byte("127.0.0.1")))
		}
	}

	// The carrier is busy: a call that reaches B ends at once.
	e := newTestEnvWith(f, sipua.CarrierOptions{Mode: "busy"}, func(o *Options) {
		o.InboundCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} // INVITEs go past auth
		o.AnswerMode = "early"                                                // no 2xx waits for an ACK
		o.Attempts = 1
		o.FirstDigitTimeout = 50 * time.Millisecond
		o.InterDigitTimeout = 50 * time.Millisecond
		o.RingTimeout = 2 * time.Second
		if os.Getenv("VNUMTEST_LOG") == "" {
			o.Logger = slog.New(slog.DiscardHandler) // the buffer would grow with every call
		}
	})
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() { // the fake router's EndCall blocks once its channel is full
		defer close(drained)
		for {
			select {
			case <-e.router.ended:
			case <-stop:
				return
			}
		}
	}()
	fx := &fuzzFixture{e: e}
	f.Cleanup(func() {
		fx.close()
		// The calls the fuzzed messages started all end, and give back
		// their ports.
		require.Eventually(f, func() bool { return e.srv.ActiveCalls() == 0 && e.ports.InUse() == 0 },
			fuzzCallsEnd, 20*time.Millisecond, "calls=%d ports=%d", e.srv.ActiveCalls(), e.ports.InUse())
		close(stop)
		<-drained
	})
	base := 0

	f.Fuzz(func(t *testing.T, msg []byte) {
		fx.ensure(t)
		if base == 0 {
			base = runtime.NumGoroutine()
		}
		panics := e.srv.Panics()
		var peers []*rawPeer
		var sent [][]byte
		for _, network := range []string{"udp", "tcp"} {
			p := newRawPeer(t, e.srv, network, "127.0.0.1:0")
			m, ok := fx.expand(p, msg)
			if !ok {
				t.Skip("names an address off this host")
			}
			if network == "udp" && len(m) > maxDatagram {
				continue // no datagram can carry it
			}
			p.write(m)
			peers, sent = append(peers, p), append(sent, m)
		}
		// Both transports' INVITEs are ended at once: the waits for
		// their answers overlap.
		var wg sync.WaitGroup
		for i, p := range peers {
			wg.Go(func() { endInvite(p, sent[i]) })
		}
		wg.Wait()
		require.Equal(t, panics, e.srv.Panics(), "a handler panicked")
		for _, network := range []string{"udp", "tcp"} {
			requireAlive(t, newRawPeer(t, e.srv, network, "127.0.0.1:0"))
		}
		for _, p := range peers {
			t.Logf("%s: answered %v", p.network, p.statuses())
		}
		if e.srv.ActiveCalls() > fuzzMaxCalls {
			require.Eventually(t, func() bool { return e.srv.ActiveCalls() <= fuzzMaxCalls }, fuzzCallsEnd, 10*time.Millisecond,
				"calls do not end: %d", e.srv.ActiveCalls())
		}
		if runtime.NumGoroutine() > base+fuzzMaxGoroutines {
			require.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+fuzzMaxGoroutines }, fuzzCallsEnd, 10*time.Millisecond,
				"goroutines grow: %d after setup, %d now", base, runtime.NumGoroutine())
		}
	})
}

// fuzzFixture is a call in progress, in early media, whose dialog the
// in-dialog seeds address. A fuzzed BYE or CANCEL may end it; the next
// iteration then places another.
type fuzzFixture struct {
	e      *testEnv
	p      *rawPeer
	callID string
	from   string
	to     string
	cseq   atomic.Int64
	invite *sip.Request // the INVITE that placed the call
	n      int
}

// ensure places the fixture's call unless one is in progress: an INVITE
// from the trunk to X, which the IVR answers with 183.
func (fx *fuzzFixture) ensure(t *testing.T) {
	t.Helper()
	if fx.p != nil {
		fx.p.t = t
		res := inviteFinal(fx.p, "1")
		if res == nil {
			return
		}
		ackFinal(fx.p, fx.invite, res)
		fx.close()
	}
	fx.n++
	fx.callID = fmt.Sprintf("fixture-%d-%s", fx.n, randHex())
	fx.from = randHex()
	fx.cseq.Store(1)
	// Not newRawPeer, whose socket closes with the iteration: the fixture
	// outlives it, and fx.close closes its socket.
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	p := &rawPeer{t: t, network: "udp", udp: udp, more: make(chan struct{}, 1),
		to: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(fx.e.srv.Addr("udp"))), local: udp.LocalAddr().(*net.UDPAddr).AddrPort()}
	go p.read(udp)
	fx.p = p
	msg := strings.NewReplacer("{callid}", fx.callID, "{fromtag}", fx.from).Replace(
		"INVITE sip:" + testHost + "@{vnum} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n" +
			"From: <sip:13700137000@{local}>;tag={fromtag}\r\nTo: <sip:" + testHost + "@{vnum}>\r\nCall-ID: {callid}\r\n" +
			"CSeq: 1 INVITE\r\nContact: <sip:fz@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {clen}\r\n\r\n" + fuzzSDP("sendrecv"))
	m, _ := fx.expand(p, []byte(msg))
	invite, err := sip.NewParser().ParseSIP(m)
	require.NoError(t, err)
	fx.invite = invite.(*sip.Request)
	p.write(m)
	deadline := time.Now().Add(10 * time.Second)
	for fx.to == "" {
		require.True(t, time.Now().Before(deadline), "the fixture's INVITE got no 183:\n%s", p.received())
		select {
		case <-p.more:
		case <-time.After(100 * time.Millisecond):
		}
		if m := toTagOf183.FindStringSubmatch(p.received()); m != nil {
			fx.to = m[1]
		}
	}
}

// close forgets the fixture; the server ends its call on its own (the IVR
// gives up), and closing its socket stops the reader.
func (fx *fuzzFixture) close() {
	if fx.p != nil && fx.p.udp != nil {
		_ = fx.p.udp.Close()
	}
	fx.p, fx.to = nil, ""
}

// expand fills in the placeholders for a message sent from p. It reports
// false for a message that names an IP address off this host, to which a
// reply might go (over TCP, sipgo answers at the Via's address once the
// connection is gone: docs/sipgo.md §12).
func (fx *fuzzFixture) expand(p *rawPeer, msg []byte) ([]byte, bool) {
	var vnum string
	if p.udp != nil {
		vnum = p.to.String()
	} else {
		vnum = p.tcp.RemoteAddr().String()
	}
	branch := randHex()
	r := strings.NewReplacer(
		"{via}", "SIP/2.0/"+strings.ToUpper(p.network)+" "+p.local.String()+";branch=z9hG4bK"+branch+";rport",
		"{local}", p.local.String(), "{vnum}", vnum, "{branch}", branch,
		"{callid}", fx.callID, "{fromtag}", fx.from, "{totag}", fx.to,
		"{cseq}", strconv.FormatInt(fx.cseq.Add(1), 10))
	out := []byte(r.Replace(string(msg)))
	if i := bytes.Index(out, []byte("\r\n\r\n")); i >= 0 {
		out = bytes.ReplaceAll(out, []byte("{clen}"), []byte(strconv.Itoa(len(out)-i-4-bytes.Count(out[i:], []byte("{clen}"))*len("{clen}"))))
	}
	for _, ip := range ipv4Literal.FindAll(out, -1) {
		// What is not an address is a name, and vnum resolves none.
		if a, err := netip.ParseAddr(string(ip)); err == nil && !a.IsLoopback() {
			return nil, false
		}
	}
	if bytes.Contains(out, []byte("::")) || ipv6Literal.Match(out) {
		return nil, false
	}
	if m, err := sip.NewParser().ParseSIP(out); err == nil {
		if v := m.Via(); v != nil {
			if a, err := netip.ParseAddr(v.Host); err == nil && !a.IsLoopback() {
				return nil, false
			}
		}
	}
	return out, true
}

// endInvite ends what msg started when it is an INVITE. A new call is
// CANCELled once the server has answered it at all (RFC 3261 §9.1), so
// that it ends now rather than when the IVR gives up; the INVITE's final
// response is ACKed (§17.1.1.3, §13.2.2.4), so that no retransmission of
// it runs on into the next iteration.
func endInvite(p *rawPeer, msg []byte) {
	m, err := sip.NewParser().ParseSIP(msg)
	if err != nil {
		return
	}
	req, ok := m.(*sip.Request)
	if !ok || !req.IsInvite() || req.Via() == nil || req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil {
		return
	}
	if !answersReach(p, req) {
		return // the server answers elsewhere: nothing to wait for
	}
	if len(p.statuses()) == 0 {
		select {
		case <-p.more:
		case <-time.After(fuzzNoAnswer):
			return // no answer: no transaction
		}
	}
	seq := strconv.Itoa(int(req.CSeq().SeqNo))
	if _, tagged := req.To().Params.Get("tag"); !tagged && inviteFinal(p, seq) == nil {
		p.write([]byte("CANCEL " + req.Recipient.String() + " SIP/2.0\r\nVia: " + req.Via().Value() + "\r\nMax-Forwards: 70\r\n" +
			"From: " + req.From().Value() + "\r\nTo: " + req.To().Value() + "\r\nCall-ID: " + req.CallID().Value() + "\r\n" +
			"CSeq: " + seq + " CANCEL\r\nContent-Length: 0\r\n\r\n"))
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if res := inviteFinal(p, seq); res != nil {
			ackFinal(p, req, res)
			return
		}
		select {
		case <-p.more:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// answersReach reports whether the server's answers to req, sent from p,
// come back to p: over TCP on the connection; over UDP at the source
// address and the Via's port, or the source port when the Via asks for
// rport (RFC 3261 §18.2.2, RFC 3581). A torture message's Via names a
// port of its own.
func answersReach(p *rawPeer, req *sip.Request) bool {
	if p.udp == nil {
		return true
	}
	v := req.Via()
	if _, rport := v.Params.Get("rport"); rport {
		return true
	}
	port := v.Port
	if port == 0 {
		port = 5060
	}
	return port == int(p.local.Port())
}

// ackFinal ACKs res, the final response to the INVITE req sent from p. A
// non-2xx is ACKed in the INVITE's transaction (RFC 3261 §17.1.1.3), a 2xx
// in a new one (§13.2.2.4). The server holds a call it refused until the
// ACK comes or Timer H fires (32 s).
func ackFinal(p *rawPeer, req *sip.Request, res *sip.Response) {
	via := req.Via().Value()
	if res.StatusCode < 300 {
		via = "SIP/2.0/" + strings.ToUpper(p.network) + " " + p.local.String() + ";branch=z9hG4bK" + randHex() + ";rport"
	}
	p.write([]byte("ACK " + req.Recipient.String() + " SIP/2.0\r\nVia: " + via + "\r\nMax-Forwards: 70\r\n" +
		"From: " + req.From().Value() + "\r\nTo: " + res.To().Value() + "\r\nCall-ID: " + req.CallID().Value() + "\r\n" +
		"CSeq: " + strconv.Itoa(int(req.CSeq().SeqNo)) + " ACK\r\nContent-Length: 0\r\n\r\n"))
}

// inviteFinal returns the final response to the INVITE with CSeq number
// seq among what p received, or nil.
func inviteFinal(p *rawPeer, seq string) *sip.Response {
	got := p.received()
	for _, start := range statusLine.FindAllStringIndex(got, -1) {
		m, err := sip.NewParser().ParseSIP([]byte(headOf(got[start[0]:])))
		if err != nil {
			continue
		}
		res, ok := m.(*sip.Response)
		if ok && res.StatusCode >= 200 && res.CSeq() != nil && res.CSeq().MethodName == sip.INVITE &&
			strconv.Itoa(int(res.CSeq().SeqNo)) == seq && res.To() != nil {
			return res
		}
	}
	return nil
}

// headOf is the header part of the message msg begins with, as a message
// without a body.
func headOf(msg string) string {
	if i := strings.Index(msg, "\r\n\r\n"); i >= 0 {
		msg = msg[:i]
	}
	var lines []string
	for _, l := range strings.Split(msg, "\r\n") {
		if !strings.HasPrefix(strings.ToLower(l), "content-length:") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
}
