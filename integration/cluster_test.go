package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/pgtest"
	"github.com/vnum/vnum/internal/testenv"
	"github.com/vnum/vnum/sip/sipua"
)

// The cluster: two `vnum serve` nodes sharing one store behind Kamailio's
// dispatcher (testdata/kamailio/dispatcher.cfg), PSTN callers (sipgo
// user agents) coming in through the proxy as the carrier's trunk would,
// and a SIPp carrier answering every leg B. README "SIP behaviour in short": any node can take any
// call, and one bill covers them all.

// requireKamailioEnvVar makes a missing Kamailio a failure instead of a
// skip (testenv.Require also honours the older VNUM_REQUIRE_ name).
const requireKamailioEnvVar = "VNUMTEST_REQUIRE_KAMAILIO"

const (
	// pstnCaller is the calling number of the trunk calls: a valid phone
	// number that is not the consignee's (that would be a callback).
	pstnCaller = "13900139000"
	// dsPing is the dispatcher's probe interval in seconds, and frTimer
	// how long (ms) Kamailio waits for any reply before a branch fails.
	dsPing  = 1
	frTimer = 2000
	// trunkNets are the sources the proxy takes calls from (a list, as an
	// operator would write it; the callers are 127.0.0.1).
	trunkNets = "192.0.2.0/24,127.0.0.1/32"
	// outsider is a loopback source outside trunkNets.
	outsider = "127.0.0.2"
	// downWithin bounds the wait for the proxy to take a dead node out:
	// a probe interval, a probe's transaction timeout, and slack for two
	// busy cores.
	downWithin = time.Duration(dsPing)*time.Second + time.Duration(frTimer)*time.Millisecond + 5*time.Second
	// upWithin bounds the wait for a node that answers again to be put
	// back: a probe interval and the probe's answer, which may take up to
	// a transaction timeout, with the same slack.
	upWithin = downWithin
)

// clusterStore returns the store every node of the cluster shares, as
// store.driver and store.dsn: a fresh database on a PostgreSQL server of
// the test's own (the topology README "SIP behaviour in short" means: several machines share one
// PostgreSQL), or one SQLite file in WAL mode, which several processes on
// one machine can share.
func clusterStore(t *testing.T, driver string) (string, string) {
	t.Helper()
	switch driver {
	case "postgres":
		return driver, pgtest.Start(t).NewDatabase(t)
	case "sqlite":
		return driver, filepath.Join(t.TempDir(), "cluster.db")
	}
	t.Fatalf("clusterStore: unknown driver %q", driver)
	return "", ""
}

// requireKamailio returns the path of kamailio, or skips the test (fails
// it when VNUMTEST_REQUIRE_KAMAILIO=1).
func requireKamailio(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kamailio")
	if err == nil {
		return p
	}
	if testenv.Require("KAMAILIO") {
		t.Fatalf("kamailio is not on PATH (%s=1 makes this a failure; install with apt-get install kamailio)", requireKamailioEnvVar)
	}
	t.Skipf("skipping: kamailio is not on PATH (install with apt-get install kamailio; %s=1 turns this skip into a failure)", requireKamailioEnvVar)
	return ""
}

// clusterNode is one `vnum serve` of the cluster.
type clusterNode struct {
	*env
	id string
}

// newClusterNode writes the config of node id: its own SIP, RTP and admin
// ports, the shared store, the carrier at carrierPort, and 127.0.0.1 (the
// proxy) as the trunk's source.
func newClusterNode(t *testing.T, id, driver, dsn string, carrierPort int) *clusterNode {
	t.Helper()
	e := newEnv(t, fmt.Sprintf("node:\n  id: %s\n", id))
	e.setYAML(fmt.Sprintf("sip:127.0.0.1:%d;", e.carrierPort), fmt.Sprintf("sip:127.0.0.1:%d;", carrierPort))
	e.carrierPort = carrierPort
	e.setYAML("inbound_cidrs: []", "inbound_cidrs: [127.0.0.1/32]")
	e.setYAML(fmt.Sprintf("  driver: sqlite\n  dsn: %s\n", filepath.Join(e.dir, "vnum.db")),
		fmt.Sprintf("  driver: %s\n  dsn: %q\n", driver, dsn))
	// The calls carry no RTP; the open ones must outlive the media timeout.
	e.setYAML("  timeout: 20s", "  timeout: 120s")
	// A draining node answers new INVITEs 503 for this long before it
	// hangs up its calls: time for two calls through the proxy.
	e.setYAML("  drain_timeout: 2s", "  drain_timeout: 5s")
	// Bills are cut in UTC, so that the month of a call is the month of
	// its started_at as printed.
	e.setYAML("calls:\n", "billing:\n  timezone: UTC\ncalls:\n")
	return &clusterNode{env: e, id: id}
}

func (n *clusterNode) sipAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(n.sipPort))
}

// kamailio is the proxy, started from testdata/kamailio/dispatcher.cfg
// with its own working folder, pid file and dispatcher list.
type kamailio struct {
	t    *testing.T
	port int
	p    *proc
}

// startKamailio runs Kamailio in the foreground in front of nodes and
// waits until it listens; when its port is taken after all, it starts
// again on a fresh one.
func startKamailio(t *testing.T, bin string, nodes ...*clusterNode) *kamailio {
	t.Helper()
	dir := t.TempDir()
	keepArtifacts(t, dir)
	var list strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&list, "1 sip:127.0.0.1:%d\n", n.sipPort)
	}
	listPath := filepath.Join(dir, "dispatcher.list")
	require.NoError(t, os.WriteFile(listPath, []byte(list.String()), 0o644))
	cfg := filepath.Join(moduleRoot(t), "testdata", "kamailio", "dispatcher.cfg")
	k := &kamailio{t: t}
	for attempt := 1; ; attempt++ {
		k.port = freePort(t)
		letGo(k.port)
		k.p = startProc(t, "kamailio", dir, filepath.Join(dir, "kamailio.log"), os.Environ(),
			bin, "-f", cfg, "-DD", "-E", "-w", dir, "-P", filepath.Join(dir, "kamailio.pid"),
			"-A", fmt.Sprintf("LISTEN=udp:127.0.0.1:%d", k.port),
			"-A", fmt.Sprintf("DS_LIST=%q", listPath),
			"-A", fmt.Sprintf("DS_PING=%d", dsPing),
			"-A", fmt.Sprintf("FR_TIMER=%d", frTimer),
			"-A", fmt.Sprintf("TRUNK_NETS=%q", trunkNets))
		err := waitBound(k.p, k.port, 20*time.Second)
		if err == nil && !k.p.exited() {
			return k
		}
		if err == nil || !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatalf("kamailio is not listening on udp/%d: %v\n%s", k.port, err, k.p.logTail(40))
		}
		t.Logf("kamailio on udp/%d: %v: again on a fresh port", k.port, err)
	}
}

// logSize is the length of the proxy's log now: waitLog from there on
// sees only what the proxy logs after this moment.
func (k *kamailio) logSize() int {
	k.t.Helper()
	fi, err := os.Stat(k.p.logPath)
	require.NoError(k.t, err)
	return int(fi.Size())
}

// waitLog waits until the proxy's log, from byte since on, has a line
// containing every one of needles.
func (k *kamailio) waitLog(since int, within time.Duration, what string, needles ...string) {
	k.t.Helper()
	deadline := time.Now().Add(within)
	for {
		data, _ := os.ReadFile(k.p.logPath)
		if since <= len(data) {
			data = data[since:]
		}
		for _, line := range strings.Split(string(data), "\n") {
			found := true
			for _, n := range needles {
				found = found && strings.Contains(line, n)
			}
			if found {
				k.t.Logf("kamailio: %s", strings.TrimSpace(line))
				return
			}
		}
		if k.p.exited() || time.Now().After(deadline) {
			k.t.Fatalf("kamailio did not log %s within %s:\n%s", what, within, k.p.logTail(60))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireRefused sends an INVITE to the proxy from outsider, a source
// outside TRUNK_NETS, and requires the proxy's own 403: the nodes would
// take anything relayed as a trunk call, without digest.
func (k *kamailio) requireRefused(t *testing.T, dial string) {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("vnum-itest-outsider"))
	require.NoError(t, err)
	defer ua.Close()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(outsider),
		sipgo.WithClientConnectionAddr(fmt.Sprintf("%s:%d", outsider, freePort(t))))
	require.NoError(t, err)
	defer client.Close()
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: dial, Host: "127.0.0.1", Port: k.port})
	req.SetTransport("UDP")
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: pstnCaller, Host: outsider}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := client.Do(ctx, req)
	require.NoError(t, err, "INVITE from %s to the proxy", outsider)
	require.Equal(t, 403, res.StatusCode, "INVITE from %s, outside TRUNK_NETS: %s", outsider, res.StartLine())
}

// clusterCDRs lists every CDR of the shared store.
func clusterCDRs(t *testing.T, n *clusterNode) ([]cdr, string) {
	t.Helper()
	raw := n.run("cdr", "list", "--format", "json")
	return parseCDRs(t, raw), raw
}

// withPrefix keeps the rows whose Call-ID begins with prefix.
func withPrefix(rows []cdr, prefix string) []cdr {
	var out []cdr
	for _, r := range rows {
		if strings.HasPrefix(r.CallID, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// waitEnded polls until want rows with Call-IDs beginning with prefix
// have ended, and returns them.
func waitEnded(t *testing.T, n *clusterNode, prefix string, want int, within time.Duration) []cdr {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rows, raw := clusterCDRs(t, n)
		if got := withPrefix(rows, prefix); allEnded(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d ended CDRs of %s* within %s, have:\n%s", want, prefix, within, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// placeCalls places n trunk calls to addr (a node, or the proxy), one
// after another, each hung up by the caller once its CDR shows B's
// answer (openCall), and returns their rows once all have ended. cli
// reads the shared store.
//
// The caller waits for B's answer, not for a fixed time: vnum answers a
// trunk caller at once, before B, and on a busy machine B's answer came
// later than a caller's hold of 300 ms, and once of 1 s: vnum then
// CANCELled leg B and the call was no answered call.
func placeCalls(t *testing.T, cli *clusterNode, addr netip.AddrPort, extension string, n int) []cdr {
	t.Helper()
	var ids []string
	for range n {
		_, d, c := openCall(t, cli, addr, extension)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := d.Bye(ctx)
		cancel()
		require.NoError(t, err, "hanging up %s", c.CallID)
		ids = append(ids, c.CallID)
	}
	var rows []cdr
	for _, id := range ids {
		rows = append(rows, waitEnded(t, cli, id, 1, 10*time.Second)...)
	}
	return rows
}

// byNode counts rows per node.
func byNode(rows []cdr) map[string]int {
	out := map[string]int{}
	for _, r := range rows {
		out[r.Node]++
	}
	return out
}

// requireAnsweredOn requires every row answered, on node when it is set.
func requireAnsweredOn(t *testing.T, rows []cdr, node string) {
	t.Helper()
	for _, r := range rows {
		require.Equal(t, "answered", r.Disposition, "CDR %+v", r)
		require.Equal(t, merchantID, r.Merchant, "CDR %+v", r)
		if node != "" {
			require.Equal(t, node, r.Node, "CDR of %s", r.CallID)
		}
	}
}

// openCall places a trunk call to addr (a node, or the proxy) with a
// sipgo UA and waits until its CDR shows it answered and still open; the
// caller hangs up with the returned dialog. cli reads the shared store.
func openCall(t *testing.T, cli *clusterNode, addr netip.AddrPort, extension string) (*sipua.Softphone, *sipgo.DialogClientSession, cdr) {
	t.Helper()
	phone, err := sipua.NewSoftphone(pstnCaller, "not-used-on-the-trunk", nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := phone.Call(ctx, addr, hostNumber+"-"+extension)
	require.NoError(t, err, "a trunk call to %s", addr)
	callID := d.InviteRequest.CallID().Value()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, raw := clusterCDRs(t, cli)
		if got := withPrefix(rows, callID); len(got) == 1 && got[0].AnsweredAt != nil && !got[0].ended() {
			return phone, d, got[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no open, answered CDR for the call %s to %s:\n%s", callID, addr, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitBye waits until phone has received a BYE and returns it.
func waitBye(t *testing.T, phone *sipua.Softphone, within time.Duration) *sip.Request {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, m := range phone.Received() {
			if !strings.HasPrefix(m, "BYE ") {
				continue
			}
			msg, err := sip.ParseMessage([]byte(m))
			require.NoError(t, err, "the BYE the caller received:\n%s", m)
			req, ok := msg.(*sip.Request)
			require.True(t, ok, "the BYE the caller received:\n%s", m)
			return req
		}
		if time.Now().After(deadline) {
			t.Fatalf("the caller received no BYE within %s", within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// viaHas reports whether one of req's Via hops is 127.0.0.1:port.
func viaHas(req *sip.Request, port int) bool {
	for _, h := range req.GetHeaders("Via") {
		if v, ok := h.(*sip.ViaHeader); ok && v.Host == "127.0.0.1" && v.Port == port {
			return true
		}
	}
	return false
}

// createBinding creates the order's binding through a node's admin API.
func createBinding(t *testing.T, n *clusterNode) binding {
	t.Helper()
	body := fmt.Sprintf(`{"merchant":%q,"order":%q,"consignee":%q,"order_status":"shipped"}`, merchantID, orderID, consignee)
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/bindings", n.adminPort)
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Post(url, "application/json", bytes.NewBufferString(body))
	require.NoError(t, err)
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, res.StatusCode, "POST /v1/bindings on %s: %s", n.id, data)
	var b binding
	require.NoError(t, json.Unmarshal(data, &b), "POST /v1/bindings: %s", data)
	require.Equal(t, hostNumber, b.Host, "POST /v1/bindings: %s", data)
	return b
}

// TestCluster runs two vnum nodes on one shared store behind Kamailio's
// dispatcher: a binding made on node 1 is callable on node 2; the proxy
// refuses a source outside TRUNK_NETS; calls spread over both nodes;
// after a kill -9 of node 1 every new call is taken by node 2 (failover on
// the proxy, then the node marked down by its probes); node 1, started
// again, closes only its own open CDR as interrupted and is probed back
// into the rotation; a draining node's 503 sends the call to the other
// node; and one bill counts every node's calls. The nodes share a
// PostgreSQL database, and, as a cheaper variant on one machine, a SQLite
// file; every CLI call reads the same store through a node's config.
func TestCluster(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"postgres", "sqlite"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			testCluster(t, driver)
		})
	}
}

func testCluster(t *testing.T, driver string) {
	kam := requireKamailio(t)
	requireTool(t, "sipp")

	driver, dsn := clusterStore(t, driver)
	carrierPort := freePort(t)
	n1 := newClusterNode(t, "node-1", driver, dsn, carrierPort)
	n2 := newClusterNode(t, "node-2", driver, dsn, carrierPort)
	n1.run("merchant", "add", merchantID, "--name", "Shop")
	n1.run("number", "add", hostNumber)
	n1.startServe()
	n2.startServe()
	proxy := startKamailio(t, kam, n1, n2)

	stage := filepath.Join(t.TempDir(), "sipp")
	require.NoError(t, os.MkdirAll(stage, 0o755))
	keepArtifacts(t, stage)
	carrier := &sippPeer{t: t, name: "carrier", port: carrierPort, errLog: filepath.Join(stage, "carrier_errors.log")}
	carrier.launch(stage, func(port, mediaPort int) []string {
		return []string{requireTool(t, "sipp"), "-sf", scenarioPath(t, "uas_answer.xml"),
			"-i", "127.0.0.1", "-p", fmt.Sprint(port),
			"-mi", "127.0.0.1", "-mp", fmt.Sprint(mediaPort),
			"-trace_err", "-error_file", carrier.errLog, "-nostdin"}
	})

	// A binding made through node 1's admin API, called straight on node 2.
	b := createBinding(t, n1)
	ext := b.Extension
	dial := hostNumber + "-" + ext
	requireAnsweredOn(t, placeCalls(t, n2, n2.sipAddr(), ext, 1), n2.id)

	// Only the carrier may start calls through the proxy.
	proxy.requireRefused(t, dial)

	// Calls through the proxy spread over both nodes.
	proxyAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(proxy.port))
	rows := placeCalls(t, n1, proxyAddr, ext, 6)
	requireAnsweredOn(t, rows, "")
	count := byNode(rows)
	t.Logf("calls through the proxy by node: %v", count)
	require.Positive(t, count[n1.id], "node 1 took none of the calls through the proxy: %v", count)
	require.Positive(t, count[n2.id], "node 2 took none of the calls through the proxy: %v", count)

	// One call open on each node, then kill -9 of node 1.
	_, _, open1 := openCall(t, n1, n1.sipAddr(), ext)
	require.Equal(t, n1.id, open1.Node)
	_, d2, open2 := openCall(t, n2, n2.sipAddr(), ext)
	require.Equal(t, n2.id, open2.Node)
	pid := n1.serve.cmd.Process.Pid
	killedAt := proxy.logSize()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	_, err := n1.serve.wait(10 * time.Second)
	require.NoError(t, err)
	// Node 1's ports stay this test's until its restart.
	hold(t, n1.sipPort, n1.adminPort)
	t.Logf("killed node 1 (pid %d)", pid)

	// Calls placed one after another: the first to reach the dead node
	// fails over to node 2 when its branch times out; none fails.
	requireAnsweredOn(t, placeCalls(t, n2, proxyAddr, ext, 4), n2.id)
	// The proxy takes node 1 out of the rotation, once: after a probe
	// found it dead, or when a call's INVITE to it timed out, whichever
	// came first (a call may or may not have been sent there before a
	// probe); the line names the node either way.
	proxy.waitLog(killedAt, downWithin, "node 1 down", fmt.Sprintf("node down sip:127.0.0.1:%d ", n1.sipPort))
	// ...and every call after that goes to node 2 straight away.
	requireAnsweredOn(t, placeCalls(t, n2, proxyAddr, ext, 4), n2.id)

	// Node 1 again: it closes its own open row as interrupted and leaves
	// node 2's open call alone.
	restartedAt := proxy.logSize()
	letGo(n1.sipPort, n1.adminPort)
	n1.serve = startProc(t, "vnum serve node-1 (restarted)", n1.dir, filepath.Join(n1.dir, "vnum-serve-restarted.log"),
		cleanEnviron(), n1.bin, "--config", n1.config, "serve")
	n1.waitSIP(20 * time.Second)
	all, raw := clusterCDRs(t, n1)
	got1 := withPrefix(all, open1.CallID)
	require.Len(t, got1, 1, "cdr list: %s", raw)
	require.Equal(t, "interrupted", got1[0].Disposition, "node 1's open call after its restart: %+v", got1[0])
	require.True(t, got1[0].ended(), "node 1's open call after its restart: %+v", got1[0])
	require.Equal(t, n1.id, got1[0].Node)
	got2 := withPrefix(all, open2.CallID)
	require.Len(t, got2, 1, "cdr list: %s", raw)
	require.False(t, got2[0].ended(), "node 1's restart closed node 2's call: %+v", got2[0])
	require.Equal(t, n2.id, got2[0].Node)
	proxy.waitLog(restartedAt, upWithin, "node 1 up again", fmt.Sprintf("node up sip:127.0.0.1:%d ", n1.sipPort))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d2.Bye(ctx), "hanging up node 2's open call")
	requireAnsweredOn(t, waitEnded(t, n2, open2.CallID, 1, 10*time.Second), n2.id)

	// SIGTERM to the node that took a call through the proxy: it drains,
	// still answering the probes, and refuses new INVITEs with 503, which
	// the proxy takes to the other node at once (of two calls in a row,
	// round robin sends one to the draining node first). At the end of
	// calls.drain_timeout the node hangs the call up: its BYE reaches the
	// caller through the proxy.
	phone, _, draining := openCall(t, n1, proxyAddr, ext)
	drainer, other := n1, n2
	if draining.Node == n2.id {
		drainer, other = n2, n1
	}
	require.Equal(t, drainer.id, draining.Node, "the call through the proxy: %+v", draining)
	require.NoError(t, drainer.serve.cmd.Process.Signal(syscall.SIGTERM))
	drainer.waitAdmin("/readyz", 10*time.Second, func(status int, _ string) bool { return status != http.StatusOK },
		drainer.id+" draining (readyz not ready)")
	drainAt := proxy.logSize()
	requireAnsweredOn(t, placeCalls(t, other, proxyAddr, ext, 2), other.id)
	proxy.waitLog(drainAt, 5*time.Second, "a refused call failed over", "failover of INVITE (")
	bye := waitBye(t, phone, 20*time.Second)
	require.True(t, viaHas(bye, proxy.port), "%s's BYE did not come through the proxy:\n%s", drainer.id, bye)
	ended := waitEnded(t, other, draining.CallID, 1, 10*time.Second)
	requireAnsweredOn(t, ended, drainer.id)
	require.Equal(t, "system", ended[0].HangupBy, "the call the drain ended: %+v", ended[0])
	code, err := drainer.serve.wait(10 * time.Second)
	require.NoError(t, err)
	require.Zero(t, code, "%s after its drain", drainer.id)

	// Every call placed was answered, except node 1's call cut by the kill.
	all, raw = clusterCDRs(t, n2)
	answered := 0
	for _, r := range all {
		if r.Disposition == "answered" {
			answered++
		}
	}
	require.Equal(t, 1+6+4+4+1+2+1, answered, "direct, spread, during, after, node 2's open call, drain and the call the drain ended: %s", raw)
	require.Len(t, all, answered+1, "and the interrupted one: %s", raw)

	// One bill, every node's calls: each billed call is counted once, in
	// the bill of the month it started in (billing.timezone UTC; the test
	// may run across a month's end).
	months := map[string][]cdr{}
	for _, r := range all {
		require.NotNil(t, r.StartedAt, "cdr list: %s", raw)
		month := parseTime(t, *r.StartedAt).UTC().Format("2006-01")
		months[month] = append(months[month], r)
	}
	billedNodes := map[string]bool{}
	for month, rows := range months {
		out := n2.run("bill", "--merchant", merchantID, "--month", month, "--format", "json")
		var bill struct {
			Calls   int `json:"calls"`
			Minutes int `json:"minutes"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &bill), "vnum bill: %s", out)
		calls, minutes := 0, 0
		for _, r := range rows {
			if m := number(t, r.BilledMinutes); m > 0 {
				calls++
				minutes += m
				billedNodes[r.Node] = true
			}
		}
		t.Logf("bill %s: %s", month, strings.TrimSpace(out))
		require.Equal(t, calls, bill.Calls, "the bill of %s counts every node's billed calls: %s\n%s", month, out, raw)
		require.Equal(t, minutes, bill.Minutes, "the bill of %s: %s\n%s", month, out, raw)
	}
	require.Equal(t, []string{n1.id, n2.id}, slices.Sorted(maps.Keys(billedNodes)), "the bill covers both nodes' calls")
}
