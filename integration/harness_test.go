package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/testenv"
)

// The constants every scenario and test agrees on; uas_carrier.xml
// hard-codes them in its checks.
const (
	hostNumber = "17000000001" // X, the only number in the pool
	consignee  = "13800138000" // B, national form (trunk.number_format national)
	merchantID = "m1"
	orderID    = "o1"
	account    = "sippalice"   // the merchant's SIP login; must never reach the carrier
	password   = "sippsecret1" // vnum refuses passwords under 8 characters

	// answeredFee is one started minute at the default billing.per_minute.
	answeredFee = "0.02000"
)

// requireEnvVar makes missing tools a failure instead of a skip
// (testenv.Require also honours the older VNUM_REQUIRE_ name).
const requireEnvVar = "VNUMTEST_REQUIRE_SIPP"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	// sipgo warns about its own connection reference counts when the
	// probes' short-lived clients close; only its errors matter here.
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	dir, err := os.MkdirTemp("", "vnum-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(2)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// keepArtifacts copies dir into $VNUMTEST_ARTIFACTS/<test name>/ when
// the test ends, so that its logs and SIP traces outlive t.TempDir.
func keepArtifacts(t *testing.T, dir string) {
	root := os.Getenv("VNUMTEST_ARTIFACTS")
	if root == "" {
		return
	}
	t.Cleanup(func() {
		dst := filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()), filepath.Base(dir))
		if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
			t.Logf("keeping artifacts of %s: %v", dir, err)
		}
	})
}

// missing skips the test, or fails it when VNUMTEST_REQUIRE_SIPP=1.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if testenv.Require("SIPP") {
		t.Fatalf("%s (%s=1 makes this a failure; CI installs: apt-get install sip-tester baresip)", msg, requireEnvVar)
	}
	t.Skipf("skipping: %s (install with apt-get install sip-tester baresip; %s=1 turns this skip into a failure)", msg, requireEnvVar)
}

// requireTool returns the path of a program on PATH, or skips/fails.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s is not on PATH", name)
	}
	return p
}

// requireRawSockets checks that sipp's play_pcap_audio can open its raw
// UDP socket (root or CAP_NET_RAW).
func requireRawSockets(t *testing.T) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_UDP)
	if err != nil {
		missing(t, "sipp play_pcap_audio needs a raw socket (root or CAP_NET_RAW): %v", err)
		return
	}
	_ = syscall.Close(fd)
}

// pcapDir is where sip-tester's RTP captures live.
func pcapDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VNUMTEST_SIPP_PCAPS")
	if dir == "" {
		dir = "/usr/share/sip-tester"
	}
	if _, err := os.Stat(filepath.Join(dir, "g711a.pcap")); err != nil {
		missing(t, "sipp's pcaps are not in %s (set VNUMTEST_SIPP_PCAPS): %v", dir, err)
	}
	return dir
}

// moduleRoot is the folder of go.mod (tests run in their package folder).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "integration tests must run from the module's integration folder")
	return root
}

func scenarioPath(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(moduleRoot(t), "testdata", "sipp", name)
	_, err := os.Stat(p)
	require.NoError(t, err)
	return p
}

// vnumBinary builds ./cmd/vnum once per test run (or takes VNUMTEST_BIN).
func vnumBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("VNUMTEST_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		require.NoError(t, err)
		return abs
	}
	root := moduleRoot(t)
	buildOnce.Do(func() {
		buildBin = filepath.Join(buildDir, "vnum")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(), "build", "-o", buildBin, "./cmd/vnum")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/vnum: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// env is one vnum deployment: a config, a store, ports, and the peers'
// ports, all private to one test.
type env struct {
	t       *testing.T
	bin     string
	dir     string
	config  string
	sipPort int
	// carrierPort is where the carrier (a sipp UAS) listens: trunk.outbound.
	carrierPort int
	adminPort   int
	rtpMin      int
	rtpMax      int
	// extra YAML appended to the config (top-level sections the test adds).
	extra string
	// launcher, when set, runs `vnum serve`: a program and its arguments
	// put before vnum's own, such as prlimit --nofile=N:N.
	launcher []string
	serve    *proc
}

// newEnv writes a config for a fresh vnum on loopback. extraYAML may add
// sections that the defaults below do not set.
func newEnv(t *testing.T, extraYAML string) *env {
	t.Helper()
	e := &env{
		t:           t,
		bin:         vnumBinary(t),
		dir:         t.TempDir(),
		sipPort:     freePort(t),
		carrierPort: freePort(t),
		adminPort:   freePort(t),
		extra:       extraYAML,
	}
	e.rtpMin = freeRange(t, 100)
	e.rtpMax = e.rtpMin + 99
	keepArtifacts(t, e.dir)
	e.config = filepath.Join(e.dir, "vnum.yaml")
	require.NoError(t, os.WriteFile(e.config, []byte(e.yaml()), 0o600))
	return e
}

func (e *env) yaml() string {
	return fmt.Sprintf(`# written by the vnum integration tests
sip:
  listen: [udp://127.0.0.1:%[1]d, tcp://127.0.0.1:%[1]d]
media:
  ip: 127.0.0.1
  rtp_ports: "%[2]d-%[3]d"
  timeout: 20s
ivr:
  extension_digits: 4
  first_digit_timeout: 10s
  inter_digit_timeout: 5s
trunk:
  outbound: "sip:127.0.0.1:%[4]d;transport=udp"
  keepalive: 0s   # the carriers are SIPp scenarios that take INVITEs only
  inbound_cidrs: []
  number_format: national
calls:
  ring_timeout: 15s
  drain_timeout: 2s
store:
  driver: sqlite
  dsn: %[5]s
admin:
  listen: 127.0.0.1:%[6]d
%[7]s`, e.sipPort, e.rtpMin, e.rtpMax, e.carrierPort,
		filepath.Join(e.dir, "vnum.db"), e.adminPort, e.extra)
}

// setYAML replaces old with new in the config file (before startServe).
func (e *env) setYAML(old, new string) {
	e.t.Helper()
	data, err := os.ReadFile(e.config)
	require.NoError(e.t, err)
	require.Contains(e.t, string(data), old)
	require.NoError(e.t, os.WriteFile(e.config, []byte(strings.Replace(string(data), old, new, 1)), 0o600))
}

// cleanEnviron is the test's environment without VNUM_ variables, so that
// only the config file configures the child.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VNUM_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// run runs one vnum CLI command against the env's config and returns its
// standard output; a non-zero exit fails the test with stderr.
func (e *env) run(args ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{"--config", e.config}, args...)
	cmd := exec.CommandContext(ctx, e.bin, argv...)
	cmd.Env = cleanEnviron()
	cmd.Dir = e.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(e.t, err, "vnum %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), stdout.String(), stderr.String())
	return stdout.String()
}

// binding is what `vnum binding create --format json` prints.
type binding struct {
	ID        json.RawMessage `json:"id"`
	Host      string          `json:"host"`
	Extension string          `json:"extension"`
	Display   string          `json:"display"`
	Dial      string          `json:"dial"`
	ExpiresAt string          `json:"expires_at"`
}

// seed creates the merchant, its SIP account, the host number and one
// shipped order's binding, and returns the binding.
func (e *env) seed() binding {
	e.t.Helper()
	e.run("merchant", "add", merchantID, "--name", "Shop")
	e.run("account", "add", merchantID, account, "--password", password)
	e.run("number", "add", hostNumber)
	out := e.run("binding", "create", "--merchant", merchantID, "--order", orderID,
		"--consignee", consignee, "--order-status", "shipped", "--format", "json")
	var b binding
	require.NoError(e.t, json.Unmarshal([]byte(strings.TrimSpace(out)), &b), "binding create output: %s", out)
	require.Equal(e.t, hostNumber, b.Host, "binding create output: %s", out)
	require.Regexp(e.t, `^[0-9]{4}$`, b.Extension, "binding create output: %s", out)
	require.NotContains(e.t, out, consignee, "binding output shows B to the merchant")
	return b
}

// cdr is one row of `vnum cdr list --format json`.
type cdr struct {
	ID            json.RawMessage `json:"id"`
	CallID        string          `json:"call_id"`
	Node          string          `json:"node"`
	Merchant      string          `json:"merchant"`
	Binding       json.RawMessage `json:"binding"`
	Order         string          `json:"order"`
	Host          string          `json:"host"`
	Extension     string          `json:"extension"`
	Direction     string          `json:"direction"`
	Caller        string          `json:"caller"`
	StartedAt     *string         `json:"started_at"`
	RingingAt     *string         `json:"ringing_at"`
	AnsweredAt    *string         `json:"answered_at"`
	EndedAt       *string         `json:"ended_at"`
	TalkSeconds   json.Number     `json:"talk_seconds"`
	BilledMinutes json.Number     `json:"billed_minutes"`
	Fee           string          `json:"fee"`
	Disposition   string          `json:"disposition"`
	HangupBy      string          `json:"hangup_by"`
	SIPStatus     json.RawMessage `json:"sip_status"`
	Recorded      bool            `json:"recorded"`
}

func (c cdr) ended() bool { return c.EndedAt != nil && *c.EndedAt != "" }

// cdrs lists the CDRs; raw is the command's output for messages.
func (e *env) cdrs() (rows []cdr, raw string) {
	e.t.Helper()
	raw = e.run("cdr", "list", "--format", "json")
	return parseCDRs(e.t, raw), raw
}

// parseCDRs reads the output of `vnum cdr list --format json`.
func parseCDRs(t *testing.T, raw string) []cdr {
	t.Helper()
	trimmed := strings.TrimSpace(raw)
	if trimmed == "" || trimmed == "null" {
		return nil
	}
	var rows []cdr
	require.NoError(t, json.Unmarshal([]byte(trimmed), &rows), "cdr list output: %s", raw)
	return rows
}

// allEnded reports whether there are want rows and every one has ended.
func allEnded(rows []cdr, want int) bool {
	if len(rows) != want {
		return false
	}
	for _, r := range rows {
		if !r.ended() {
			return false
		}
	}
	return true
}

// waitCDRs polls until n CDRs exist and all have ended (a CDR is completed
// when the call's last leg is torn down, a moment after the BYE).
func (e *env) waitCDRs(n int, within time.Duration) []cdr {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		rows, raw := e.cdrs()
		if allEnded(rows, n) {
			return rows
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("want %d ended CDRs within %s, have:\n%s", n, within, raw)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitAdmin polls GET path on vnum's admin API (loopback, no token) until
// ok accepts the answer, and fails the test after within.
func (e *env) waitAdmin(path string, within time.Duration, ok func(status int, body string) bool, what string) {
	e.t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d%s", e.adminPort, path)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	last := "no answer"
	for {
		if res, err := client.Get(url); err == nil {
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if ok(res.StatusCode, string(body)) {
				return
			}
			last = fmt.Sprintf("%d %s", res.StatusCode, body)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: GET %s within %s: last %s\n%s", what, path, within, last, e.serve.logTail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCallState waits until /v1/calls lists a call in state (bridged,
// ivr, ringing: sip.CallState's names).
func (e *env) waitCallState(state string, within time.Duration) {
	e.t.Helper()
	e.waitAdmin("/v1/calls", within, func(status int, body string) bool {
		var calls []struct{ State string }
		if status != http.StatusOK || json.Unmarshal([]byte(body), &calls) != nil {
			return false
		}
		for _, c := range calls {
			if c.State == state {
				return true
			}
		}
		return false
	}, "a call in state "+state)
}

// requireAnswered checks the CDR of one answered call of a few seconds.
func requireAnswered(t *testing.T, c cdr, b binding) {
	t.Helper()
	dump, _ := json.MarshalIndent(c, "", "  ")
	t.Logf("CDR: %s", dump)
	require.Equal(t, "answered", c.Disposition, "CDR: %s", dump)
	require.Equal(t, merchantID, c.Merchant, "CDR: %s", dump)
	require.Equal(t, orderID, c.Order, "CDR: %s", dump)
	require.Equal(t, hostNumber, c.Host, "CDR: %s", dump)
	require.Equal(t, b.Extension, c.Extension, "CDR: %s", dump)
	require.Equal(t, "to_consignee", c.Direction, "CDR: %s", dump)
	require.Equal(t, account, c.Caller, "CDR: %s", dump)
	require.Equal(t, "1", c.BilledMinutes.String(), "CDR: %s", dump)
	require.Equal(t, answeredFee, c.Fee, "CDR: %s", dump)
	talk, err := c.TalkSeconds.Float64()
	require.NoError(t, err, "CDR: %s", dump)
	require.Greater(t, talk, 0.0, "talk time runs from B's answer; CDR: %s", dump)
	require.Less(t, talk, 30.0, "CDR: %s", dump)
	require.NotNil(t, c.AnsweredAt, "CDR: %s", dump)
	require.NotContains(t, string(dump), consignee, "a CDR is merchant-facing and must not show B")
}

// startServe runs `vnum serve` and waits until it answers SIP OPTIONS.
// When vnum finds its SIP or admin port taken after all (by a process
// outside internal/testport, between letGo and vnum's bind), the config
// gets fresh ports and vnum starts again.
func (e *env) startServe() {
	e.t.Helper()
	for attempt := 1; ; attempt++ {
		letGo(e.sipPort, e.adminPort)
		argv := append(append([]string(nil), e.launcher...), e.bin, "--config", e.config, "serve")
		e.serve = startProc(e.t, "vnum serve", e.dir, filepath.Join(e.dir, "vnum-serve.log"),
			cleanEnviron(), argv...)
		err := e.trySIP(20 * time.Second)
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			e.t.Fatal(err)
		}
		e.t.Logf("%v: again on fresh ports", err)
		e.movePorts()
	}
}

// movePorts gives vnum fresh SIP and admin ports, in the config file too.
func (e *env) movePorts() {
	e.t.Helper()
	data, err := os.ReadFile(e.config)
	require.NoError(e.t, err)
	text := string(data)
	for _, p := range []*int{&e.sipPort, &e.adminPort} {
		old := *p
		*p = freePort(e.t)
		text = regexp.MustCompile(fmt.Sprintf(`127\.0\.0\.1:%d\b`, old)).ReplaceAllString(text, fmt.Sprintf("127.0.0.1:%d", *p))
	}
	require.NoError(e.t, os.WriteFile(e.config, []byte(text), 0o600))
}

// waitSIP sends OPTIONS over UDP until vnum answers anything at all (the
// answer's status is logged: README "SIP behaviour in short" wants 200 for trunk keepalives).
func (e *env) waitSIP(within time.Duration) {
	e.t.Helper()
	if err := e.trySIP(within); err != nil {
		e.t.Fatal(err)
	}
}

// trySIP is waitSIP returning its failure; errPortTaken when vnum exited
// because a port of its was taken.
func (e *env) trySIP(within time.Duration) error {
	e.t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("vnum-itest-probe"))
	require.NoError(e.t, err)
	defer ua.Close()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(e.t, err)
	defer client.Close()

	deadline := time.Now().Add(within)
	var lastErr error
	for time.Now().Before(deadline) {
		if e.serve.exited() {
			if bindFailed(e.serve.logPath) {
				return fmt.Errorf("vnum serve exited: %w:\n%s", errPortTaken, e.serve.logTail(20))
			}
			return fmt.Errorf("vnum serve exited before it answered SIP: %v\n%s", e.serve.exitErr(), e.serve.logTail(60))
		}
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: e.sipPort})
		req.SetTransport("UDP")
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		res, err := client.Do(ctx, req)
		cancel()
		if err == nil {
			e.t.Logf("vnum answers OPTIONS on udp/%d: %d %s", e.sipPort, res.StatusCode, res.Reason)
			return nil
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("vnum did not answer OPTIONS on udp/127.0.0.1:%d within %s: %v\n%s",
		e.sipPort, within, lastErr, e.serve.logTail(60))
}

// proc is a child process that a test started and will stop by PID.
type proc struct {
	t       *testing.T
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	logFile *os.File
}

// startProc starts argv in dir with its output in logPath; the test's
// cleanup stops it (SIGTERM, then SIGKILL) and shows its log on failure.
func startProc(t *testing.T, name, dir, logPath string, environ []string, argv ...string) *proc {
	t.Helper()
	lf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = environ
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Stdin = nil
	require.NoError(t, cmd.Start(), "start %s", name)
	p := &proc{t: t, name: name, logPath: logPath, cmd: cmd, done: make(chan struct{}), logFile: lf}
	go func() {
		p.err = cmd.Wait()
		_ = lf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("---- %s (pid %d) log %s, last lines:\n%s", name, cmd.Process.Pid, logPath, p.logTail(120))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) exitErr() error {
	<-p.done
	return p.err
}

// wait waits for the process to end by itself and returns its exit code.
func (p *proc) wait(within time.Duration) (int, error) {
	select {
	case <-p.done:
	case <-time.After(within):
		return -1, fmt.Errorf("%s (pid %d) still running after %s", p.name, p.cmd.Process.Pid, within)
	}
	if p.err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), nil
	}
	return -1, p.err
}

// stop sends SIGTERM, then SIGKILL when the process is still there after
// grace. It only ever signals this process's own PID.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.t.Logf("%s (pid %d) did not die after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// logTail returns the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	return fileTail(p.logPath, n)
}

func fileTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
