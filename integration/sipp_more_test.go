package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// TestSippRegister: vnum is the accounts' registrar (README "SIP behaviour in short"): REGISTER is
// challenged with 401, accepted with credentials, and an unREGISTER
// (expires=0) removes the binding.
func TestSippRegister(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, _ := servedEnv(t, nil)

	stage := newStage(t, pcaps)
	phone := startSipp(t, stage, "softphone", scenarioPath(t, "uac_register.xml"), 0, 30*time.Second,
		"-key", "account", account, "-au", account, "-ap", password,
		"-auth_uri", fmt.Sprintf("127.0.0.1:%d", e.sipPort),
		fmt.Sprintf("127.0.0.1:%d", e.sipPort))
	code, err := phone.p.wait(40 * time.Second)
	require.NoError(t, err)

	// RFC 3261 §10.3 step 7: the registrar may shorten the interval the
	// client asked for (600 s), not lengthen it.
	var granted string
	for _, m := range sippSeparator.Split(phone.messages(), -1) {
		if strings.Contains(m, "SIP/2.0 200") && strings.Contains(m, "CSeq: 2 REGISTER") {
			if g := reGranted.FindStringSubmatch(m); g != nil {
				granted = g[1]
			}
		}
	}
	if n, err := strconv.Atoi(granted); err != nil || n > 600 {
		t.Errorf("the registrar granted %q s to a REGISTER that asked for 600 s (RFC 3261 §10.3: it may shorten, not lengthen)", granted)
	}
	if code != 0 {
		t.Fatalf("sipp softphone exited %d (the unREGISTER's 200 still lists the binding?):\n%s", code, fileTail(phone.errLog, 40))
	}
}

var reGranted = regexp.MustCompile(`(?mi)^Contact:.*;expires=([0-9]+)`)

// TestSippWrongPassword: wrong credentials after a challenge get 403.
func TestSippWrongPassword(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil)

	stage := newStage(t, pcaps)
	args := accountArgs(e, hostNumber+"-"+b.Extension, account, "not-"+password)
	phone := startSipp(t, stage, "softphone", scenarioPath(t, "uac_auth_fail.xml"), 0, 30*time.Second, args...)
	phone.requireSuccess(40 * time.Second)
	rows, raw := e.cdrs()
	t.Logf("CDRs after a refused call: %d %s", len(rows), strings.TrimSpace(raw))
}

// TestSippMessageRefused: virtual numbers carry no SMS (README "SIP behaviour in short").
func TestSippMessageRefused(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil)

	stage := newStage(t, pcaps)
	user := hostNumber + "-" + b.Extension
	phone := startSipp(t, stage, "softphone", scenarioPath(t, "uac_message.xml"), 0, 30*time.Second,
		"-s", user, "-key", "account", account, "-au", account, "-ap", password,
		"-auth_uri", fmt.Sprintf("%s@127.0.0.1:%d", user, e.sipPort),
		fmt.Sprintf("127.0.0.1:%d", e.sipPort))
	phone.requireSuccess(40 * time.Second)
	requireAbsent(t, phone, "the consignee's number B", consignee)
}

// TestSippCalleeHangsUp: B hangs up first; vnum ends leg A with a BYE and
// bills the talk.
func TestSippCalleeHangsUp(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil)

	stage := newStage(t, pcaps)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_hangup.xml", 30*time.Second, "-d", "3000")
	caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_until_hangup.xml"), 40*time.Second, hostNumber+"-"+b.Extension)

	// B hangs up, so the carrier ends first
	requireBothSucceed(carrier, caller, 40*time.Second, 20*time.Second)
	require.Contains(t, caller.messages(), "BYE sip:", "vnum must end leg A with a BYE once B hung up")

	c := requireAnsweredCall(t, e, b, caller, carrier)
	require.Equal(t, "callee", c.HangupBy)
}

// TestSippNoAnswer: B rings past calls.ring_timeout; vnum CANCELs leg B,
// ends leg A, and the CDR says no_answer and costs nothing.
func TestSippNoAnswer(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	// a short ring timeout keeps the test short
	e, b := servedEnv(t, nil, yamlEdit{"ring_timeout: 15s", "ring_timeout: 4s"})

	stage := newStage(t, pcaps)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_noanswer.xml", 40*time.Second)
	caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_until_hangup.xml"), 40*time.Second, hostNumber+"-"+b.Extension)

	requireBothSucceed(carrier, caller, 30*time.Second, 20*time.Second)

	rows := e.waitCDRs(1, 10*time.Second)
	requireCDR(t, rows[0], "no_answer", "", 0)
	requireAbsent(t, caller, "the consignee's number B", consignee)
}

// TestSippInvalidExtension: a caller who keys a wrong E ivr.attempts times
// is told so each time and then hung up on; B is never called.
func TestSippInvalidExtension(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil)

	// every digit differs from E's, so no binding can match it
	wrong := []rune(b.Extension)
	for i, d := range wrong {
		wrong[i] = '0' + (d-'0'+5)%10
	}
	_, c := runEndedIVRCall(t, pcaps, e, []string{string(wrong), string(wrong), string(wrong)},
		60*time.Second, 70*time.Second, softphoneArgs(e, hostNumber))
	requireCDR(t, c, "invalid_extension", "system", 0)
}

// TestSippDrain: on SIGTERM vnum refuses new calls with 503 + Retry-After,
// lets the call in progress run for calls.drain_timeout, then hangs up both
// legs, finishes the CDR and exits (README "SIP behaviour in short").
func TestSippDrain(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil)

	stage := newStage(t, pcaps)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_carrier.xml", 40*time.Second)
	caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_until_hangup.xml"), 40*time.Second, hostNumber+"-"+b.Extension)

	// wait until B has answered and been ACKed
	deadline := time.Now().Add(15 * time.Second)
	for {
		if data, err := os.ReadFile(carrier.msgLog); err == nil && strings.Contains(string(data), "\nACK sip:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the call was not bridged to B within 15 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.waitCallState("bridged", 5*time.Second)
	require.NoError(t, e.serve.cmd.Process.Signal(syscall.SIGTERM))
	// Draining: /readyz turns unavailable once vnum stops taking calls.
	e.waitAdmin("/readyz", 5*time.Second, func(status int, _ string) bool { return status == http.StatusServiceUnavailable }, "draining")

	res := e.invite(5 * time.Second)
	require.NotNil(t, res, "vnum did not answer an INVITE while draining")
	require.Equal(t, 503, res.StatusCode, "a new call while draining: %s", res.StartLine())
	require.NotNil(t, res.GetHeader("Retry-After"), "503 while draining needs Retry-After: %s", res.String())

	// vnum's BYE after calls.drain_timeout
	requireBothSucceed(caller, carrier, 20*time.Second, 20*time.Second)
	code, err := e.serve.wait(20 * time.Second)
	require.NoError(t, err)
	require.Zero(t, code, "vnum serve's exit code after SIGTERM")

	rows := e.waitCDRs(1, 5*time.Second)
	requireCDR(t, rows[0], "answered", "system", 1)
}

// invite sends an unauthenticated INVITE without SDP to vnum over UDP and
// returns its final response (nil when none came).
func (e *env) invite(within time.Duration) *sip.Response {
	e.t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("vnum-itest-probe"))
	require.NoError(e.t, err)
	defer ua.Close()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(e.t, err)
	defer client.Close()
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: hostNumber, Host: "127.0.0.1", Port: e.sipPort})
	req.SetTransport("UDP")
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	res, err := client.Do(ctx, req)
	if err != nil {
		e.t.Logf("INVITE while draining: %v", err)
		return nil
	}
	return res
}

// TestSippHold: a re-INVITE that puts B on hold keeps the call up (README "SIP behaviour in short").
func TestSippHold(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil)

	stage := newStage(t, pcaps)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_carrier.xml", 40*time.Second)
	caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_reinvite.xml"), 40*time.Second, hostNumber+"-"+b.Extension)

	requireBothSucceed(caller, carrier, 50*time.Second, 20*time.Second)
	requireAnsweredCall(t, e, b, caller, carrier)
}

// TestSippInfoDTMF: E keyed as SIP INFO application/dtmf-relay (README "SIP behaviour in short").
func TestSippInfoDTMF(t *testing.T) {
	t.Parallel()
	runIVRCall(t, ivrCase{call: dtmfCall{talk: 4 * time.Second, info: true}})
}

// TestSippBargeIn: E keyed the moment the call is answered, before the
// prompt has said anything, still counts (README "SIP behaviour in short": digits count from the
// answer).
func TestSippBargeIn(t *testing.T) {
	t.Parallel()
	runIVRCall(t, ivrCase{call: dtmfCall{wait: time.Millisecond, talk: 4 * time.Second}})
}

// TestSippReleasedBinding: a released (X, E) in quarantine gets the
// "expired" prompt and the call ends at once; B is never called.
func TestSippReleasedBinding(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, func(e *env, b binding) {
		var id string
		require.NoError(t, json.Unmarshal(b.ID, &id), "binding id %s", b.ID)
		e.run("binding", "release", id)
	})

	_, c := runEndedIVRCall(t, pcaps, e, []string{b.Extension}, 40*time.Second, 50*time.Second, softphoneArgs(e, hostNumber))
	requireCDR(t, c, "expired", "system", 0)
}

// TestSippForeignMerchant: another merchant's account keying m1's E gets
// the same "invalid" treatment as an unknown E (no oracle), and B is never
// called.
func TestSippForeignMerchant(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, func(e *env, _ binding) {
		e.run("merchant", "add", "m2", "--name", "Other shop")
		e.run("account", "add", "m2", "othershop", "--password", "othersecret1")
	})

	caller, c := runEndedIVRCall(t, pcaps, e, []string{b.Extension, b.Extension, b.Extension},
		60*time.Second, 70*time.Second, accountArgs(e, hostNumber, "othershop", "othersecret1"))
	requireCDR(t, c, "invalid_extension", "system", 0)
	requireAbsent(t, caller, "the consignee's number B", consignee)
}

// TestSippInbandDTMF: a caller that offers no telephone-event keys E as
// tones in its PCMA audio (README "SIP behaviour in short").
func TestSippInbandDTMF(t *testing.T) {
	t.Parallel()
	runIVRCall(t, ivrCase{call: dtmfCall{talk: 4 * time.Second, inband: true}})
}

// TestSippTrunkDigest: a carrier that challenges vnum's INVITE gets
// trunk.username / trunk.password (vnum.example.yaml).
func TestSippTrunkDigest(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil, yamlEdit{"trunk:\n", "trunk:\n  username: carrieruser\n  password: carriersecret\n"})

	stage := newStage(t, pcaps)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_carrier_auth.xml", 30*time.Second)
	caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_direct.xml"), 30*time.Second, hostNumber+"-"+b.Extension, "-d", "3000")

	requireBothSucceed(caller, carrier, 45*time.Second, 20*time.Second)
	requireAnsweredCall(t, e, b, caller, carrier)
	requireAbsent(t, carrier, "the trunk password", "carriersecret")
}

// TestSippEarlyIVR: with ivr.answer early, vnum plays the prompt and takes
// E in 183 early media, and answers leg A only when B answers.
func TestSippEarlyIVR(t *testing.T) {
	t.Parallel()
	runIVRCall(t, ivrCase{call: dtmfCall{talk: 4 * time.Second, early: true}, edits: []yamlEdit{{"ivr:\n", "ivr:\n  answer: early\n"}}})
}

// TestSippAuthBlock: a source address that fails digest authentication
// security.auth_failures times in a minute is blocked; another address,
// with the same account, keeps working (README "SIP behaviour in short"). The attacker is
// 127.0.0.2, still loopback.
func TestSippAuthBlock(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil, yamlEdit{"sip:\n", "security:\n  auth_failures: 5\n  block_for: 15m\nsip:\n"})
	user := hostNumber + "-" + b.Extension

	stage := newStage(t, pcaps)
	wrong := accountArgs(e, user, account, "not-"+password)
	attacker := startSipp(t, stage, "attacker", scenarioPath(t, "uac_auth_fail.xml"), 0, 30*time.Second,
		append([]string{"-i", "127.0.0.2", "-m", "5", "-r", "5"}, wrong...)...)
	attacker.requireSuccess(40 * time.Second)

	// now even the right password from 127.0.0.2 gets nowhere
	blocked := startSipp(t, stage, "blocked", scenarioPath(t, "uac_direct.xml"), 0, 8*time.Second,
		append([]string{"-i", "127.0.0.2", "-d", "1000"}, softphoneArgs(e, user)...)...)
	blocked.requireFailure(20 * time.Second)
	t.Logf("the blocked source's last messages:\n%s", fileTail(blocked.msgLog, 30))

	// while 127.0.0.1 calls with the same account as usual
	carrier := startCarrier(t, stage, e.carrierPort, "uas_carrier.xml", 30*time.Second)
	caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_direct.xml"), 30*time.Second, user, "-d", "2000")
	requireBothSucceed(caller, carrier, 40*time.Second, 20*time.Second)

	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, raw := e.cdrs()
		answered := 0
		for _, r := range rows {
			if r.Disposition == "answered" && r.ended() {
				answered++
			}
		}
		if answered == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want one answered CDR (127.0.0.1's call), have:\n%s", raw)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
