package sip

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// tortureAnswer is what vnum answered to one RFC 4475 message on one
// transport: the final status, or 0 for silence.
type tortureAnswer struct {
	name, network string
	request       bool // a request (not a response), so an answer may be due
	status        int
	all           []int
}

// sendTorture sends one message byte for byte from a fresh socket and
// returns the final status vnum answered within wait (0 for none). Over UDP
// the socket is bound at a loopback address of its own on the port of the
// message's top Via (or 5060): vnum answers a UDP request at its source
// address and the Via's port (RFC 3261 §18.2.2), so that is where the
// answer comes. Should another program hold that port on every address,
// the message goes from a port of the system's choosing and heard is
// false: vnum's answer cannot be seen.
func sendTorture(t *testing.T, srv *Server, network string, ip netip.Addr, msg []byte, wait time.Duration) (status int, all []int, heard bool, err error) {
	p := &rawPeer{t: t, network: network, more: make(chan struct{}, 1)}
	switch network {
	case "udp":
		port := 5060
		if m, perr := sip.NewParser().ParseSIP(msg); perr == nil {
			if v := m.Via(); v != nil && v.Port > 0 {
				port = v.Port
			}
		}
		heard = true
		p.udp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if errors.Is(err, syscall.EADDRINUSE) {
			heard = false
			p.udp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		}
		if err != nil {
			return 0, nil, false, err
		}
		defer p.udp.Close()
		p.to = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(srv.Addr("udp")))
		go p.read(p.udp)
		_, err = p.udp.WriteToUDP(msg, p.to)
	case "tcp":
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: 5 * time.Second}
		p.tcp, err = d.Dial("tcp", srv.Addr("tcp"))
		if err != nil {
			return 0, nil, false, err
		}
		heard = true
		defer p.tcp.Close()
		go p.read(p.tcp)
		_, err = p.tcp.Write(msg)
	}
	if err != nil {
		return 0, nil, false, err
	}
	status = p.final(wait)
	return status, p.statuses(), heard, nil
}

// tortureKey is what sipgo matches a server transaction by (top Via's
// branch and sent-by, CSeq method, RFC 3261 §17.2.3): RFC 4475's messages
// share branches, and two of them sent to one server at once, or within a
// transaction's lifetime, would be one transaction and its retransmission.
func tortureKey(name string, msg []byte) string {
	m, err := sip.NewParser().ParseSIP(msg)
	if err != nil || m.Via() == nil || m.CSeq() == nil {
		return name
	}
	v := m.Via()
	branch, _ := v.Params.Get("branch")
	method := m.CSeq().MethodName
	if method == sip.ACK {
		method = sip.INVITE
	}
	return fmt.Sprintf("%s|%s:%d|%s", branch, v.Host, v.Port, method)
}

// tortureWant pins the answers RFC 4475 names (by message, or message and
// transport), and the exceptions to "valid: answered, invalid: ignored or
// 4xx" that it states.
var tortureWant = map[string][]int{
	// wsinv: valid; its To has a tag, so it is a re-INVITE of a dialog
	// vnum does not have (sipgo's 400 before the header parameters were
	// trimmed).
	"valid/wsinv": {481},
	// dblreq is about extra octets in a UDP datagram; on a stream the
	// octets after the REGISTER are a second message (an INVITE without
	// Contact: 400), and whether sipgo's stream parser takes either, or
	// drops both, depends on how the bytes arrive in reads.
	"valid/dblreq tcp": {0, 400, 401},
	"valid/dblreq udp": {401},
	// badvers: an unknown SIP version gets 505.
	"invalid/badvers": {505},
	// mismatch01, bext01, unkscm: CSeq method mismatch, unknown Require,
	// unknown Request-URI scheme.
	"invalid/mismatch01": {400},
	"invalid/bext01":     {420},
	"invalid/unkscm":     {416},
	// mcl01: two Content-Lengths: 400 over UDP; on a stream the message
	// cannot be framed and sipgo drops it.
	"invalid/mcl01 udp": {400},
	// badbranch: a branch of only the magic cookie may fall back to RFC 2543
	// matching and be processed.
	"invalid/badbranch": {200},
	// zeromf: Max-Forwards 0 stops a proxy, but an endpoint processes the
	// request (vnum answers OPTIONS itself).
	"invalid/zeromf": {200},
}

type tortureMsg struct {
	name  string
	valid bool
	data  []byte
}

// TestTorture sends every RFC 4475 torture message to a running vnum over
// UDP and TCP. Sends that sipgo would take for one transaction go to
// separate servers; all run at once, so the test takes a few seconds.
// Every valid request gets an answer that is not 500 (what a recovered
// panic gives) and not silence; every invalid message is ignored or
// refused with 4xx (505 for an unknown SIP version); nothing panics; every
// server keeps answering and a genuine call bridges afterwards.
func TestTorture(t *testing.T) {
	t.Parallel()
	var msgs []tortureMsg
	for _, dir := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", "torture", dir, "*.dat"))
		require.NoError(t, err)
		require.NotEmpty(t, files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			msgs = append(msgs, tortureMsg{dir + "/" + strings.TrimSuffix(filepath.Base(f), ".dat"), dir == "valid", b})
		}
	}
	type send struct {
		msg     tortureMsg
		network string
	}
	// Wave k takes the k-th send of each transaction key.
	var waves [][]send
	seen := map[string]int{}
	for _, m := range msgs {
		for _, network := range []string{"udp", "tcp"} {
			k := tortureKey(m.name, m.data)
			w := seen[k]
			seen[k]++
			if w == len(waves) {
				waves = append(waves, nil)
			}
			waves[w] = append(waves[w], send{m, network})
		}
	}

	var mu sync.Mutex
	answers := map[string]tortureAnswer{}
	var wg sync.WaitGroup
	envs := make([]*testEnv, len(waves))
	for w, wave := range waves {
		envs[w] = newTestEnv(t, "answer", nil)
		for i, sd := range wave {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A loopback address per send: answers cannot cross.
				ip := netip.AddrFrom4([4]byte{127, 44, byte(w + 1), byte(i + 1)})
				status, all, heard, err := sendTorture(t, envs[w].srv, sd.network, ip, sd.msg.data, 2*time.Second)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("%s over %s: %v", sd.msg.name, sd.network, err)
					return
				}
				if !heard {
					t.Logf("%s over %s: its Via's port is taken, the answer is not checked", sd.msg.name, sd.network)
					return
				}
				request := !bytes.HasPrefix(sd.msg.data, []byte("SIP/"))
				answers[sd.msg.name+" "+sd.network] = tortureAnswer{name: sd.msg.name, network: sd.network, request: request, status: status, all: all}
			}()
		}
	}
	wg.Wait()
	require.NotEmpty(t, answers)
	for _, k := range sortedKeys(answers) {
		a := answers[k]
		t.Logf("%-26s %-4s final %d all %v", a.name, a.network, a.status, a.all)
		if want, ok := tortureWant[a.name+" "+a.network]; ok {
			require.Contains(t, want, a.status, "%s over %s", a.name, a.network)
			continue
		}
		if want, ok := tortureWant[a.name]; ok {
			require.Contains(t, want, a.status, "%s over %s", a.name, a.network)
			continue
		}
		switch {
		case !a.request:
			require.Zero(t, a.status, "%s over %s: a stray response is not answered", a.name, a.network)
		case strings.HasPrefix(a.name, "valid/"):
			require.NotZero(t, a.status, "%s over %s: silence", a.name, a.network)
			require.NotEqual(t, 500, a.status, "%s over %s", a.name, a.network)
		default:
			require.True(t, a.status == 0 || a.status >= 400 && a.status < 500,
				"%s over %s: %d, want silence or 4xx", a.name, a.network, a.status)
		}
	}
	for _, e := range envs {
		require.Zero(t, e.srv.Panics())
		requireAlive(t, newRawPeer(t, e.srv, "udp", "127.0.0.1:0"))
	}
	envs[0].requireCallBridges()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
