package sip

import (
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// dnsServer is a DNS server on loopback that records every question. It
// answers A queries for the names in hosts, and NXDOMAIN for the rest.
type dnsServer struct {
	conn  *net.UDPConn
	hosts map[string]net.IP

	mu    sync.Mutex
	names []string
}

func newDNSServer(t *testing.T, hosts map[string]net.IP) *dnsServer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	d := &dnsServer{conn: conn, hosts: hosts}
	t.Cleanup(func() { _ = conn.Close() })
	go d.serve()
	return d
}

// resolver is a Go resolver whose every query goes to this server.
func (d *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", d.conn.LocalAddr().String())
	}}
}

// queried returns the names asked for so far ("name/type").
func (d *dnsServer) queried() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.names...)
}

func (d *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		name, qtype, end, ok := dnsQuestion(q)
		if !ok {
			continue
		}
		d.mu.Lock()
		d.names = append(d.names, name+"/"+strconv.Itoa(int(qtype)))
		d.mu.Unlock()
		res := append([]byte(nil), q[:end]...)
		binary.BigEndian.PutUint16(res[2:], 0x8180) // response, recursion available
		binary.BigEndian.PutUint16(res[6:], 0)      // answers
		binary.BigEndian.PutUint16(res[8:], 0)
		binary.BigEndian.PutUint16(res[10:], 0)
		ip, known := d.hosts[name]
		switch {
		case !known:
			res[3] |= 3 // NXDOMAIN
		case qtype == 1:
			binary.BigEndian.PutUint16(res[6:], 1)
			res = append(res, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
			res = append(res, ip.To4()...)
		}
		_, _ = d.conn.WriteToUDP(res, from)
	}
}

// dnsQuestion reads the question of a DNS query (RFC 1035 §4.1.2): the
// name, its type and where the question ends.
func dnsQuestion(q []byte) (string, uint16, int, bool) {
	if len(q) < 12 {
		return "", 0, 0, false
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return "", 0, 0, false
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return "", 0, 0, false
	}
	return strings.ToLower(strings.Join(labels, ".")), binary.BigEndian.Uint16(q[i+1:]), i + 5, true
}

// TestNoDNSFromMessages: names that messages carry are never looked up
// (docs/sipgo.md §12). vnum's resolver is a DNS server the
// test runs; trunk.outbound names the carrier by a host name, which vnum
// resolves, and that is the only name ever asked for. Stray requests over
// TCP whose connection is gone before the answer (Via and Contact naming
// hosts), the same over UDP, and a call whose Record-Route names a host
// (vnum's BYE to the caller) ask for nothing; vnum keeps answering and the
// call ends cleanly.
func TestNoDNSFromMessages(t *testing.T) {
	t.Parallel()
	dns := newDNSServer(t, map[string]net.IP{"carrier.test": net.IPv4(127, 0, 0, 1)})
	e := newTestEnv(t, "answer", func(o *Options) {
		o.Resolver = dns.resolver()
		port := strings.TrimPrefix(o.TrunkOutbound[strings.LastIndex(o.TrunkOutbound, ":"):], ":")
		port = strings.TrimSuffix(port, ";transport=udp")
		o.TrunkOutbound = "sip:carrier.test:" + port + ";transport=udp"
	})

	// Stray requests naming hosts, over TCP connections closed at once
	// (the answer finds no connection, and sipgo falls back on the Via),
	// and over UDP.
	stray := func(method string) string {
		return strings.Join([]string{
			method + " sip:" + testHost + "@127.0.0.1 SIP/2.0",
			"Via: SIP/2.0/{NET} via-" + strings.ToLower(method) + ".evil.example:5060;branch=z9hG4bK" + randHex(),
			"Max-Forwards: 70",
			"From: <sip:a@from.evil.example>;tag=" + randHex(),
			"To: <sip:" + testHost + "@127.0.0.1>",
			"Call-ID: " + randHex(),
			"CSeq: 1 " + method,
			"Contact: <sip:a@contact.evil.example:5070>",
			"Content-Length: 0", "", ""}, "\r\n")
	}
	for i := 0; i < 10; i++ {
		for _, method := range []string{"ACK", "OPTIONS", "BYE", "INVITE", "REGISTER"} {
			c, err := net.Dial("tcp", e.srv.Addr("tcp"))
			require.NoError(t, err)
			_, err = c.Write([]byte(strings.ReplaceAll(stray(method), "{NET}", "TCP")))
			require.NoError(t, err)
			require.NoError(t, c.Close())
		}
	}
	u := newRawPeer(t, e.srv, "udp", "127.0.0.1:0")
	for _, method := range []string{"ACK", "OPTIONS", "BYE", "INVITE", "REGISTER"} {
		u.reset()
		msg := strings.ReplaceAll(stray(method), "{NET}", "UDP")
		msg = strings.Replace(msg, ".evil.example:5060;", ".evil.example:"+strconv.Itoa(int(u.local.Port()))+";", 1)
		u.write([]byte(msg))
		if method != "ACK" {
			// Answered at the source address and the Via's port, though
			// Via names a host (RFC 3261 §18.2.2).
			require.NotZero(t, u.final(5*time.Second), method)
		}
	}
	requireAlive(t, newRawPeer(t, e.srv, "tcp", "127.0.0.1:0"))
	requireAlive(t, u)

	// A call through a proxy that Record-Routes by name: the callee hangs
	// up, and vnum's BYE to the caller would go to the route's host.
	// The caller's side resolves the route with a DNS server of its own
	// (to 127.0.0.1 and vnum's port), so its ACK reaches vnum.
	callerDNS := newDNSServer(t, map[string]net.IP{"rr.evil.example": net.IPv4(127, 0, 0, 1)})
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("routed"), sipgo.WithUserAgentDNSResolver(callerDNS.resolver()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ua.Close() })
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(t, err)
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 5999}}
	dc := sipgo.NewDialogClientCache(cl, contact)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	d, err := dc.Invite(ctx, sip.Uri{Scheme: "sip", User: testHost + "-" + testExt, Host: e.vnum.Addr().String(), Port: int(e.vnum.Port())},
		e.phone.SDP(), from, sip.NewHeader("Content-Type", "application/sdp"),
		sip.NewHeader("Record-Route", "<sip:rr.evil.example:"+strconv.Itoa(int(e.vnum.Port()))+";lr>"))
	require.NoError(t, err)
	require.NoError(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "alice", Password: "s3cret"}))
	require.NoError(t, d.Ack(ctx))
	nextInvite(t, e.carrier)
	ds := nextSession(t, e.carrier)
	require.NoError(t, ds.Bye(ctx))
	cdr := e.router.waitEnded(t)
	require.Equal(t, "callee", string(cdr.HangupBy))
	e.waitNoCalls()

	for _, q := range dns.queried() {
		require.True(t, strings.HasPrefix(q, "carrier.test/"), "vnum looked up %q, a name from a message (all: %v)", q, dns.queried())
	}
	require.NotEmpty(t, dns.queried(), "trunk.outbound's host is resolved with Options.Resolver")
}

// TestCarrierContactByName: a carrier whose answer names a host in Contact
// still gets vnum's ACK and BYE, sent where its 2xx came from, and vnum
// looks the name up nowhere.
func TestCarrierContactByName(t *testing.T) {
	t.Parallel()
	dns := newDNSServer(t, nil)
	e := newTestEnvWith(t, sipua.CarrierOptions{Mode: "answer", ContactHost: "gw.carrier.invalid"}, func(o *Options) {
		o.Resolver = dns.resolver()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	ds := nextSession(t, e.carrier)
	require.Eventually(t, func() bool { return ds.LoadState() == sip.DialogStateConfirmed },
		5*time.Second, 10*time.Millisecond, "the carrier never got vnum's ACK")
	require.NoError(t, d.Bye(ctx))
	select {
	case <-ds.Context().Done():
	case <-ctx.Done():
		t.Fatal("the carrier never got vnum's BYE")
	}
	cdr := e.router.waitEnded(t)
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "caller", string(cdr.HangupBy))
	for _, q := range dns.queried() {
		require.NotContains(t, q, "gw.carrier.invalid", "vnum looked up the carrier's Contact")
	}
}
