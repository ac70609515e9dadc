package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// baresip 1.0 (Debian's) runs headless with: ausine as the microphone (a
// 440 Hz tone; it only works at 48 kHz stereo, baresip resamples for
// G.711), aubridge as the speaker (a sink nothing reads), g711 as the only
// codecs, menu for the dial/sndcode/hangup commands, and ctrl_tcp to drive
// it: netstrings ("LEN:JSON,") carrying {"command","params","token"} one
// way and {"response","ok","data","token"} or {"event","type",...} the
// other. sndcode sends each key as an RFC 4733 event (with the
// telephone-event PT of the answer) and then a key release. baresip also
// listens on sip_listen's port + 1 (TCP, for TLS), so both must be free.
var baresipModules = []string{"g711.so", "ausine.so", "aubridge.so", "account.so", "menu.so", "ctrl_tcp.so"}

func baresipModuleDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VNUMTEST_BARESIP_MODULES")
	if dir == "" {
		dir = "/usr/lib/baresip/modules"
	}
	for _, m := range baresipModules {
		if _, err := os.Stat(filepath.Join(dir, m)); err != nil {
			missing(t, "baresip module %s is not in %s (set VNUMTEST_BARESIP_MODULES): %v", m, dir, err)
		}
	}
	return dir
}

// baresipPhone is a running baresip and its control connection.
type baresipPhone struct {
	t       *testing.T
	p       *proc
	logPath string
	conn    net.Conn

	mu        sync.Mutex
	responses map[string]chan baresipMsg
	events    chan baresipMsg
	seen      []string
	nextToken int
}

// baresipMsg is either a command response or an event.
type baresipMsg struct {
	Response bool   `json:"response"`
	OK       bool   `json:"ok"`
	Data     string `json:"data"`
	Token    string `json:"token"`
	Event    bool   `json:"event"`
	Type     string `json:"type"`
	Class    string `json:"class"`
	Param    string `json:"param"`
	PeerURI  string `json:"peeruri"`
}

// startBaresip writes a config folder for account@127.0.0.1:vnumPort and
// starts baresip on it, with a SIP trace (-s) in its log.
func startBaresip(t *testing.T, e *env, modules string) *baresipPhone {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "baresip")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	keepArtifacts(t, dir)
	sipPort := freePorts(t, 2) // sip_listen and the TLS port after it
	ctrlPort := freePort(t)
	rtp := freeRange(t, 20)
	config := fmt.Sprintf(`# written by the vnum integration tests
poll_method		epoll
sip_listen		127.0.0.1:%d
net_interface		127.0.0.1
call_local_timeout	30
call_max_calls		1
audio_player		aubridge,vnumitest
audio_alert		aubridge,vnumitest
audio_source		ausine,440
ausrc_srate		48000
ausrc_channels		2
auplay_srate		48000
auplay_channels		2
audio_level		no
rtp_ports		%d-%d
rtcp_mux		no
rtp_stats		yes
module_path		%s
module			g711.so
module			ausine.so
module			aubridge.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:%d
statmode_default	off
`, sipPort, rtp, rtp+19, modules, ctrlPort)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o600))
	accounts := fmt.Sprintf("\"Alice\" <sip:%s@127.0.0.1:%d;transport=udp>;auth_pass=%s;regint=600;audio_codecs=pcma,pcmu;answermode=manual\n",
		account, e.sipPort, password)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "accounts"), []byte(accounts), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "contacts"), nil, 0o600))

	b := &baresipPhone{
		t:         t,
		logPath:   filepath.Join(dir, "baresip.log"),
		responses: map[string]chan baresipMsg{},
		events:    make(chan baresipMsg, 256),
	}
	letGo(sipPort, ctrlPort)
	b.p = startProc(t, "baresip", dir, b.logPath, os.Environ(), requireTool(t, "baresip"), "-f", dir, "-s", "-v")

	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", ctrlPort), time.Second)
		if err == nil {
			b.conn = conn
			break
		}
		if b.p.exited() || time.Now().After(deadline) {
			t.Fatalf("baresip ctrl_tcp on 127.0.0.1:%d: %v\n%s", ctrlPort, err, b.p.logTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		_ = b.conn.Close()
		if t.Failed() {
			b.mu.Lock()
			t.Logf("baresip events: %s", strings.Join(b.seen, ", "))
			b.mu.Unlock()
		}
	})
	go b.read()
	return b
}

// read splits the netstrings from baresip into responses and events.
func (b *baresipPhone) read() {
	r := bufio.NewReader(b.conn)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenStr, ":")))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		buf := make([]byte, n+1)
		if _, err := io.ReadFull(r, buf); err != nil || buf[n] != ',' {
			return
		}
		var m baresipMsg
		if json.Unmarshal(buf[:n], &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.Response {
			if ch, ok := b.responses[m.Token]; ok {
				ch <- m
				delete(b.responses, m.Token)
			}
		} else if m.Event {
			b.seen = append(b.seen, m.Type+"("+m.Param+")")
			select {
			case b.events <- m:
			default:
			}
		}
		b.mu.Unlock()
	}
}

func writeNetstring(w io.Writer, payload []byte) error {
	_, err := fmt.Fprintf(w, "%d:%s,", len(payload), payload)
	return err
}

// command runs one baresip command and returns its output.
func (b *baresipPhone) command(name, params string) string {
	b.t.Helper()
	b.mu.Lock()
	b.nextToken++
	token := fmt.Sprintf("t%d", b.nextToken)
	ch := make(chan baresipMsg, 1)
	b.responses[token] = ch
	b.mu.Unlock()

	req := map[string]string{"command": name, "token": token}
	if params != "" {
		req["params"] = params
	}
	payload, err := json.Marshal(req)
	require.NoError(b.t, err)
	require.NoError(b.t, writeNetstring(b.conn, payload))
	select {
	case m := <-ch:
		require.True(b.t, m.OK, "baresip %s %s: %s", name, params, m.Data)
		return m.Data
	case <-time.After(5 * time.Second):
		b.t.Fatalf("baresip did not answer %s %s\n%s", name, params, b.p.logTail(40))
	}
	return ""
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// waitRegistered polls reginfo until the account is registered to vnum.
func (b *baresipPhone) waitRegistered(within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		info := ansi.ReplaceAllString(b.command("reginfo", ""), "")
		if strings.Contains(info, " OK ") {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("baresip did not register to vnum within %s: %s\n%s", within, info, fileTail(b.logPath, 80))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var errCallClosed = errors.New("call closed")

// waitEvent waits for an event of type want; a CALL_CLOSED first is an error.
func (b *baresipPhone) waitEvent(want string, within time.Duration) (baresipMsg, error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case m := <-b.events:
			if m.Type == want {
				return m, nil
			}
			if m.Type == "CALL_CLOSED" {
				return m, fmt.Errorf("%w: %s", errCallClosed, m.Param)
			}
		case <-timer.C:
			return baresipMsg{}, fmt.Errorf("no %s within %s", want, within)
		}
	}
}

// noCallClosed fails if the call ended (an event arrived) by now.
func (b *baresipPhone) noCallClosed() {
	b.t.Helper()
	for {
		select {
		case m := <-b.events:
			if m.Type == "CALL_CLOSED" {
				b.t.Fatalf("vnum ended the call early: %s\n%s", m.Param, fileTail(b.logPath, 120))
			}
		default:
			return
		}
	}
}

// traceCallID is the Call-ID of the first INVITE in baresip's SIP trace.
func traceCallID(log string) string {
	i := strings.Index(log, "\nINVITE sip:")
	if i < 0 {
		return ""
	}
	m := reCallID.FindStringSubmatch(log[i:])
	if m == nil {
		return ""
	}
	return m[1]
}

// TestBaresipCall: a real softphone registers its account to vnum (digest,
// 401), dials X, keys E with RFC 4733 over the prompt, talks and hangs up.
func TestBaresipCall(t *testing.T) {
	t.Parallel()
	requireTool(t, "baresip")
	pcaps := sippPrereqs(t)
	modules := baresipModuleDir(t)
	e, b := servedEnv(t, nil)

	stage := newStage(t, pcaps)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_carrier.xml", 60*time.Second)

	phone := startBaresip(t, e, modules)
	phone.waitRegistered(10 * time.Second)

	phone.command("dial", fmt.Sprintf("sip:%s@127.0.0.1:%d", hostNumber, e.sipPort))
	if _, err := phone.waitEvent("CALL_ESTABLISHED", 15*time.Second); err != nil {
		t.Fatalf("dialling X: %v\n%s", err, fileTail(phone.logPath, 120))
	}
	time.Sleep(time.Second) // the prompt starts
	for _, key := range b.Extension {
		phone.command("sndcode", string(key))
		time.Sleep(400 * time.Millisecond)
	}
	e.waitCallState("bridged", 15*time.Second) // B answered
	time.Sleep(2 * time.Second)                // they talk: a call of a few seconds
	phone.noCallClosed()
	t.Logf("baresip callstat: %s", ansi.ReplaceAllString(phone.command("callstat", ""), ""))
	phone.command("hangup", "")
	if _, err := phone.waitEvent("CALL_CLOSED", 10*time.Second); err != nil {
		t.Fatalf("hanging up: %v", err)
	}

	carrier.requireSuccess(20 * time.Second)
	rows := e.waitCDRs(1, 10*time.Second)
	requireAnswered(t, rows[0], b)

	trace, err := os.ReadFile(phone.logPath)
	require.NoError(t, err)
	require.NotContains(t, string(trace), consignee, "the caller (baresip's SIP trace) must never see B")
	if id := traceCallID(string(trace)); id != "" {
		requireAbsent(t, carrier, "the caller's Call-ID", id)
	} else {
		t.Error("no INVITE Call-ID in baresip's SIP trace")
	}
	requireAbsent(t, carrier, "the caller's User-Agent", "baresip")
}
