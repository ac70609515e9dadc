package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/require"
)

// sippPeer is one running sipp: a softphone (UAC) or the carrier (UAS).
type sippPeer struct {
	t         *testing.T
	name      string
	p         *proc
	msgLog    string
	errLog    string
	port      int
	mediaPort int
}

// newStage makes the folder sipp runs in and reads its scenarios from:
// sipp finds play_pcap_audio files next to the scenario, so it holds
// g711a.pcap, the per-test DTMF captures and copies of the scenarios.
func newStage(t *testing.T, pcaps string) string {
	t.Helper()
	stage := filepath.Join(t.TempDir(), "sipp")
	require.NoError(t, os.MkdirAll(stage, 0o755))
	keepArtifacts(t, stage)
	require.NoError(t, os.Symlink(filepath.Join(pcaps, "g711a.pcap"), filepath.Join(stage, "g711a.pcap")))
	return stage
}

// startSipp runs one sipp for a single call (-m 1) bounded by timeout,
// tracing every SIP message and every unexpected one into stage. args are
// the scenario's own options (and, for a UAC, the remote address last).
// port 0 picks a free one. It returns once sipp has bound its SIP port.
func startSipp(t *testing.T, stage, name, scenario string, port int, timeout time.Duration, args ...string) *sippPeer {
	t.Helper()
	s := &sippPeer{
		t:      t,
		name:   name,
		msgLog: filepath.Join(stage, name+"_messages.log"),
		errLog: filepath.Join(stage, name+"_errors.log"),
		port:   port,
	}
	// SIPp looks for play_pcap_audio files next to the scenario first.
	if filepath.Dir(scenario) != stage {
		data, err := os.ReadFile(scenario)
		require.NoError(t, err)
		scenario = filepath.Join(stage, filepath.Base(scenario))
		require.NoError(t, os.WriteFile(scenario, data, 0o644))
	}
	// args may name another loopback address with -i (a second source).
	ip := "127.0.0.1"
	for i, a := range args {
		if a == "-i" && i+1 < len(args) {
			ip = args[i+1]
			args = append(args[:i:i], args[i+2:]...)
			break
		}
	}
	s.launch(stage, func(port, mediaPort int) []string {
		argv := []string{requireTool(t, "sipp"),
			"-sf", scenario,
			"-i", ip, "-p", fmt.Sprint(port),
			"-mi", ip, "-mp", fmt.Sprint(mediaPort),
			"-m", "1",
			"-timeout", fmt.Sprintf("%ds", int(timeout.Seconds())), "-timeout_error",
			"-trace_msg", "-message_file", s.msgLog,
			"-trace_err", "-error_file", s.errLog,
			"-nostdin",
		}
		return append(argv, args...)
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- sipp %s unexpected messages (%s):\n%s", name, s.errLog, fileTail(s.errLog, 80))
			t.Logf("---- sipp %s SIP messages (%s), last lines:\n%s", name, s.msgLog, fileTail(s.msgLog, 150))
		}
	})
	return s
}

// launch starts sipp with the command line argv makes for a SIP port and
// the first of four media ports (-mp: RTP, RTCP, video RTP, video RTCP),
// and waits until it has bound its SIP port. s.port, when set, is the SIP
// port (a carrier's, named in vnum's config), else launch leases one.
// When sipp finds a port of its taken after all (by a process outside
// internal/testport), it starts sipp again on fresh ports; a fixed port
// that is taken fails the test.
func (s *sippPeer) launch(stage string, argv func(port, mediaPort int) []string) {
	s.t.Helper()
	fixed := s.port != 0
	for attempt := 1; ; attempt++ {
		if !fixed {
			s.port = freePort(s.t)
		}
		s.mediaPort = freePorts(s.t, 4)
		letGo(s.port, s.mediaPort)
		// The error log of an earlier attempt must not count again.
		_ = os.Remove(s.errLog)
		s.p = startProc(s.t, "sipp "+s.name, stage, filepath.Join(stage, s.name+"_screen.log"), os.Environ(),
			argv(s.port, s.mediaPort)...)
		err := waitBound(s.p, s.port, 30*time.Second, s.errLog)
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || fixed || attempt == 3 {
			s.t.Fatalf("sipp %s on udp/%d, media %d: %v\n%s", s.name, s.port, s.mediaPort, err, s.p.logTail(30))
		}
		s.t.Logf("sipp %s on udp/%d, media %d: %v: again on fresh ports", s.name, s.port, s.mediaPort, err)
	}
}

// waitListening waits until sipp has bound its SIP port (launch has
// waited for it already; a sipp that exited since fails the test).
func (s *sippPeer) waitListening() {
	s.t.Helper()
	if !ownsPort(s.p.cmd.Process.Pid, s.port) {
		s.t.Fatalf("sipp %s is not listening on udp/%d:\n%s", s.name, s.port, s.p.logTail(30))
	}
}

// requireSuccess waits for sipp to end and requires exit code 0 (every
// call successful; 1 means a failed call, 255 a timeout or fatal error).
func (s *sippPeer) requireSuccess(within time.Duration) {
	s.t.Helper()
	code, err := s.p.wait(within)
	if err != nil {
		s.t.Fatalf("sipp %s: %v", s.name, err)
	}
	if code != 0 {
		s.t.Fatalf("sipp %s exited %d; unexpected messages:\n%s", s.name, code, fileTail(s.errLog, 60))
	}
}

// requireFailure waits for sipp to end and requires a non-zero exit code.
func (s *sippPeer) requireFailure(within time.Duration) {
	s.t.Helper()
	code, err := s.p.wait(within)
	require.NoError(s.t, err)
	require.NotZero(s.t, code, "sipp %s should have failed the call", s.name)
}

func (s *sippPeer) messages() string {
	s.t.Helper()
	data, err := os.ReadFile(s.msgLog)
	require.NoError(s.t, err)
	return string(data)
}

// dtmfScenario fills testdata/sipp/uac_dtmf.xml.tmpl.
type dtmfScenario struct {
	Attempts     [][]dtmfKey
	WaitMs       int
	DigitGapMs   int
	AttemptGapMs int
	TalkMs       int
	Hangup       bool
	Info         bool
	Inband       bool
	Early        bool
	ByeCSeq      int
}

// dtmfKey is one key press: its RTP capture, or a SIP INFO with its CSeq.
type dtmfKey struct {
	Pcap    string
	Key     string
	CSeq    int
	PauseMs int // from this key to the next, or to what follows the last
}

// dtmfCall says how the softphone of uac_dtmf.xml keys and ends its call.
type dtmfCall struct {
	attempts []string      // the extensions keyed, in order
	wait     time.Duration // from the ACK to the first key (default 1 s)
	talk     time.Duration // after the last key, before the BYE
	hangup   bool          // wait for vnum's BYE instead of talking
	info     bool          // key with SIP INFO instead of RFC 4733
	inband   bool          // key with tones in PCMA, offer no telephone-event
	early    bool          // ivr.answer early: key E in the 183's early media
}

// renderDTMF writes uac_dtmf.xml into stage: the softphone keys each
// attempt (renumbered captures, one RFC 4733 event per key, or SIP INFO),
// then talks and hangs up, or waits for vnum's BYE.
func renderDTMF(t *testing.T, pcaps, stage string, call dtmfCall) string {
	t.Helper()
	tmpl, err := template.ParseFiles(scenarioPath(t, "uac_dtmf.xml.tmpl"))
	require.NoError(t, err)
	keys := strings.Join(call.attempts, "")
	var files []string
	if call.inband {
		files = inbandPcaps(t, stage, keys)
	} else {
		files = dtmfPcaps(t, pcaps, stage, keys)
	}
	wait := call.wait
	if wait == 0 {
		wait = time.Second
	}
	data := dtmfScenario{
		WaitMs:       int(wait.Milliseconds()),
		DigitGapMs:   300,
		AttemptGapMs: 2500,
		TalkMs:       int(call.talk.Milliseconds()),
		Hangup:       call.hangup,
		Info:         call.info,
		Inband:       call.inband,
		Early:        call.early,
	}
	cseq := 3 // INVITE 1 and 2 came before
	for _, a := range call.attempts {
		var attempt []dtmfKey
		for _, k := range a {
			attempt = append(attempt, dtmfKey{Pcap: files[0], Key: string(k), CSeq: cseq, PauseMs: data.DigitGapMs})
			files = files[1:]
			cseq++
		}
		data.Attempts = append(data.Attempts, attempt)
	}
	if call.early && len(data.Attempts) > 0 {
		// vnum's 180/200 follow the last key at once: a pause there would
		// make them unexpected
		last := data.Attempts[len(data.Attempts)-1]
		last[len(last)-1].PauseMs = 0
	}
	data.ByeCSeq = cseq
	path := filepath.Join(stage, "uac_dtmf.xml")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, tmpl.Execute(f, data))
	require.NoError(t, f.Close())
	return path
}

// softphoneArgs are the UAC options for account calling user@vnum.
func softphoneArgs(e *env, user string) []string {
	return accountArgs(e, user, account, password)
}

// accountArgs are the UAC options for login (with pass) calling user@vnum.
func accountArgs(e *env, user, login, pass string) []string {
	return []string{
		"-s", user,
		"-key", "account", login,
		"-au", login, "-ap", pass,
		// the digest uri is the Request-URI (sipp's default is sip:host:port)
		"-auth_uri", fmt.Sprintf("%s@127.0.0.1:%d", user, e.sipPort),
		"-cid_str", "uacleg-%u-%p@%s",
		"-aa",
		fmt.Sprintf("127.0.0.1:%d", e.sipPort),
	}
}

// The sipp message log separates messages with a line of dashes.
var sippSeparator = regexp.MustCompile(`(?m)^-{20,}.*$`)

// messageWith returns the first traced message that contains needle.
func messageWith(log, needle string) string {
	for _, m := range sippSeparator.Split(log, -1) {
		if strings.Contains(m, needle) {
			return strings.TrimSpace(m)
		}
	}
	return ""
}

// requireAbsent fails when any message in a peer's trace contains needle.
func requireAbsent(t *testing.T, peer *sippPeer, what, needle string) {
	t.Helper()
	if needle == "" {
		t.Fatalf("empty needle for %s", what)
	}
	if m := messageWith(peer.messages(), needle); m != "" {
		t.Errorf("privacy: sipp %s saw %s (%q) in:\n%s", peer.name, what, needle, m)
	}
}

var (
	reCallID  = regexp.MustCompile(`(?mi)^(?:Call-ID|i):\s*(\S+)`)
	reFromTag = regexp.MustCompile(`(?mi)^(?:From|f):.*;tag=([^;>\s]+)`)
)

// requirePrivacy checks the invariant on both traces: the caller never
// sees B; the carrier sees nothing of leg A.
func requirePrivacy(t *testing.T, caller, carrier *sippPeer) {
	t.Helper()
	requireAbsent(t, caller, "the consignee's number B", consignee)

	callerLog := caller.messages()
	callID := reCallID.FindStringSubmatch(callerLog)
	require.NotNil(t, callID, "no Call-ID in the caller's trace")
	tag := reFromTag.FindStringSubmatch(callerLog)
	require.NotNil(t, tag, "no From tag in the caller's trace")

	requireAbsent(t, carrier, "the caller's account name", account)
	requireAbsent(t, carrier, "the caller's Call-ID", callID[1])
	requireAbsent(t, carrier, "the caller's From tag", tag[1])
	requireAbsent(t, carrier, "the caller's User-Agent", "sipp-softphone")
	requireAbsent(t, carrier, "the caller's SDP session id", "53655765")
	requireAbsent(t, carrier, "the caller's SIP address", fmt.Sprintf("127.0.0.1:%d", caller.port))
	requireAbsent(t, carrier, "the caller's RTP port", fmt.Sprintf("m=audio %d ", caller.mediaPort))
}

// TestScenarioSelfCheck runs the scenarios against sipp stand-ins, without
// vnum: it proves the softphone's digest answer, its DTMF captures (one
// RFC 4733 event per key, repeated keys included), the carrier's checks
// and the bench's trunk callers (no digest, X-E, the RTP each plays), so
// that a failure against vnum is vnum's.
func TestScenarioSelfCheck(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)

	t.Run("softphone DTMF and digest", func(t *testing.T) {
		stage := newStage(t, pcaps)
		const keys = "1123"
		sinkPort := freePorts(t, 2)
		sink := newDTMFSink(t, sinkPort)
		// The stand-in's SDP answer names the sink (-key sink) as its RTP
		// address, so the softphone's DTMF goes there.
		uacXML := renderDTMF(t, pcaps, stage, dtmfCall{attempts: []string{keys[:2], keys[2:]}, talk: 1500 * time.Millisecond})
		vnum := startSipp(t, stage, "standin_vnum", scenarioPath(t, "selftest_vnum_uas.xml"), 0, 30*time.Second,
			"-key", "sink", fmt.Sprint(sinkPort))
		vnum.waitListening()
		e := &env{sipPort: vnum.port}
		uac := startSoftphone(t, stage, e, uacXML, 30*time.Second, hostNumber)
		requireBothSucceed(uac, vnum, 40*time.Second, 10*time.Second)
		require.Equal(t, keys, sink.keys(), "RFC 4733 events the softphone sent (one per RTP timestamp)")
	})

	t.Run("carrier accepts a clean leg B", func(t *testing.T) {
		stage := newStage(t, pcaps)
		carrier := startCarrier(t, stage, 0, "uas_carrier.xml", 30*time.Second)
		legB := startSipp(t, stage, "standin_legb", scenarioPath(t, "selftest_trunk_uac.xml"), 0, 30*time.Second,
			"-s", consignee, "-key", "from", hostNumber, "-key", "extra", "X-Note: clean",
			fmt.Sprintf("127.0.0.1:%d", carrier.port))
		requireBothSucceed(legB, carrier, 20*time.Second, 10*time.Second)
	})

	// The trunk callers of the bench against a stand-in that takes a trunk
	// call (no digest, X-E dialled) and answers with the sink's RTP port:
	// each call ends cleanly, and the sink gets the RTP each caller plays.
	capture, err := readPcap(filepath.Join(pcaps, "g711a.pcap"))
	require.NoError(t, err)
	for _, tc := range []struct {
		name, scenario string
		args           []string
		// pcmaPackets: 0 for none at all, -1 for some, else exactly.
		pcmaPackets int
	}{
		{"trunk caller", "uac_trunk.xml", []string{"-inf", "dial.csv", "-d", "1000"}, -1},
		{"trunk caller, long call", "uac_trunk_long.xml", []string{"-inf", "dial.csv", "-set", "loops", "2"},
			2 * len(capture.packets)},
		{"trunk caller without media", "uac_trunk_nomedia.xml",
			[]string{"-s", hostNumber + "-2468", "-key", "caller", "13900139000", "-d", "500"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stage := newStage(t, pcaps)
			require.NoError(t, os.WriteFile(filepath.Join(stage, "dial.csv"),
				[]byte("SEQUENTIAL\n"+hostNumber+"-2468;\n"), 0o644))
			sinkPort := freePorts(t, 2)
			sink := newRTPSink(t, sinkPort, nil)
			vnum := startSipp(t, stage, "standin_trunk", scenarioPath(t, "selftest_trunk_uas.xml"), 0, 60*time.Second,
				"-key", "sink", fmt.Sprint(sinkPort))
			vnum.waitListening()
			caller := startSipp(t, stage, "trunk_caller", scenarioPath(t, tc.scenario), 0, 60*time.Second,
				append(tc.args, fmt.Sprintf("127.0.0.1:%d", vnum.port))...)
			requireBothSucceed(caller, vnum, 60*time.Second, 10*time.Second)
			// The caller's BYE follows its last packet: every packet is
			// in the sink's socket, if not yet read.
			pcma := func() int { byPT, _, _ := sink.summary(); return byPT[8] }
			switch tc.pcmaPackets {
			case 0:
				byPT, _, _ := sink.summary()
				require.Empty(t, byPT, "RTP from a caller without media")
			case -1:
				require.Eventually(t, func() bool { return pcma() > 0 }, 2*time.Second, 10*time.Millisecond, "PCMA from the caller")
			default:
				require.Eventually(t, func() bool { return pcma() >= tc.pcmaPackets }, 2*time.Second, 10*time.Millisecond)
				require.Equal(t, tc.pcmaPackets, pcma(), "PCMA packets: g711a.pcap played -set loops times")
			}
		})
	}

	for name, args := range map[string][]string{
		"carrier rejects the account name": {"-s", consignee, "-key", "from", hostNumber, "-key", "extra", "X-Leak: " + account},
		"carrier rejects a wrong B":        {"-s", "13900000000", "-key", "from", hostNumber, "-key", "extra", "X-Note: clean"},
		"carrier rejects a From without X": {"-s", consignee, "-key", "from", "17000000002", "-key", "extra", "X-Note: clean"},
	} {
		t.Run(name, func(t *testing.T) {
			stage := newStage(t, pcaps)
			carrier := startCarrier(t, stage, 0, "uas_carrier.xml", 10*time.Second)
			legB := startSipp(t, stage, "standin_legb", scenarioPath(t, "selftest_trunk_uac.xml"), 0, 10*time.Second,
				append(args, fmt.Sprintf("127.0.0.1:%d", carrier.port))...)
			carrier.requireFailure(20 * time.Second)
			legB.p.stop(2 * time.Second)
		})
	}
}

// TestSippIVRCall is the main path: a softphone dials X, keys E over the
// prompt as RFC 4733 events, vnum calls B on the trunk, the two talk for a
// few seconds, the caller hangs up; one answered CDR bills one minute.
func TestSippIVRCall(t *testing.T) {
	t.Parallel()
	c := runIVRCall(t, ivrCase{call: dtmfCall{talk: 4 * time.Second}})
	require.Equal(t, "caller", c.HangupBy)
}

// TestSippDirectDial dials X with E in the user part in each of the forms
// that skip the prompt.
func TestSippDirectDial(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)

	for _, form := range []struct{ name, sep, transport string }{
		{"dash", "-", "u1"},
		{"comma", ",", "u1"},
		{"ext param", ";ext=", "u1"},
		{"dash over TCP", "-", "t1"},
	} {
		t.Run(form.name, func(t *testing.T) {
			e, b := servedEnv(t, nil)

			stage := newStage(t, pcaps)
			carrier := startCarrier(t, stage, e.carrierPort, "uas_carrier.xml", 30*time.Second)
			caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_direct.xml"), 30*time.Second,
				hostNumber+form.sep+b.Extension, "-d", "3000", "-t", form.transport)

			requireBothSucceed(caller, carrier, 45*time.Second, 20*time.Second)
			requireAnsweredCall(t, e, b, caller, carrier)
		})
	}
}

// TestSippBusy: B is busy; the caller is told so, and the CDR says busy and
// costs nothing.
func TestSippBusy(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil)

	stage := newStage(t, pcaps)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_busy.xml", 30*time.Second)
	caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_until_hangup.xml"), 40*time.Second, hostNumber+"-"+b.Extension)

	requireBothSucceed(caller, carrier, 50*time.Second, 20*time.Second)

	rows := e.waitCDRs(1, 10*time.Second)
	c := rows[0]
	require.Equal(t, "busy", c.Disposition, "CDR %+v", c)
	require.Equal(t, "0", c.BilledMinutes.String(), "CDR %+v", c)
	require.Empty(t, strings.Trim(c.Fee, "0."), "an unanswered call costs nothing: fee %q", c.Fee)
	t.Logf("busy CDR sip_status %s, hangup_by %s", c.SIPStatus, c.HangupBy)
	requireAbsent(t, caller, "the consignee's number B", consignee)
}
