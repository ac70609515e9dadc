package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The steps most sipp tests share: a seeded vnum, a carrier, a softphone,
// and the checks on the call's one CDR.

// sippPrereqs skips or fails the test without sipp, raw sockets or pcaps,
// and returns the pcap folder.
func sippPrereqs(t *testing.T) string {
	t.Helper()
	requireTool(t, "sipp")
	requireRawSockets(t)
	return pcapDir(t)
}

// yamlEdit replaces old with new in the config before vnum starts.
type yamlEdit struct{ old, new string }

// servedEnv writes a config (edited by edits), seeds the merchant and its
// binding, runs prepare (nil for none) and starts `vnum serve`.
func servedEnv(t *testing.T, prepare func(e *env, b binding), edits ...yamlEdit) (*env, binding) {
	t.Helper()
	e := newEnv(t, "")
	for _, ed := range edits {
		e.setYAML(ed.old, ed.new)
	}
	b := e.seed()
	if prepare != nil {
		prepare(e, b)
	}
	e.startServe()
	return e, b
}

// startCarrier starts the carrier, a sipp UAS running scenario (a file in
// testdata/sipp) on port, and waits until it listens.
func startCarrier(t *testing.T, stage string, port int, scenario string, timeout time.Duration, args ...string) *sippPeer {
	t.Helper()
	carrier := startSipp(t, stage, "carrier", scenarioPath(t, scenario), port, timeout, args...)
	carrier.waitListening()
	return carrier
}

// startSoftphone starts the caller: the sipp UAC at scenarioFile calling
// user at vnum as the merchant's account; opts come before the account's
// options.
func startSoftphone(t *testing.T, stage string, e *env, scenarioFile string, timeout time.Duration, user string, opts ...string) *sippPeer {
	t.Helper()
	args := append(append([]string(nil), opts...), softphoneArgs(e, user)...)
	return startSipp(t, stage, "softphone", scenarioFile, 0, timeout, args...)
}

// requireBothSucceed waits for the caller, then the carrier, to end well.
func requireBothSucceed(caller, carrier *sippPeer, callerWithin, carrierWithin time.Duration) {
	caller.t.Helper()
	caller.requireSuccess(callerWithin)
	carrier.requireSuccess(carrierWithin)
}

// requireAnsweredCall waits for the call's one CDR, checks it as an
// answered call of b, checks the privacy of both traces and returns it.
func requireAnsweredCall(t *testing.T, e *env, b binding, caller, carrier *sippPeer) cdr {
	t.Helper()
	rows := e.waitCDRs(1, 10*time.Second)
	requireAnswered(t, rows[0], b)
	requirePrivacy(t, caller, carrier)
	return rows[0]
}

// requireCDR checks the fields that say how an unanswered or system-ended
// call went, and logs the row.
func requireCDR(t *testing.T, c cdr, disposition, hangupBy string, billed int) {
	t.Helper()
	dump, _ := json.MarshalIndent(c, "", "  ")
	t.Logf("CDR: %s", dump)
	require.Equal(t, disposition, c.Disposition, "CDR: %s", dump)
	if hangupBy != "" {
		require.Equal(t, hangupBy, c.HangupBy, "CDR: %s", dump)
	}
	require.Equal(t, fmt.Sprint(billed), c.BilledMinutes.String(), "CDR: %s", dump)
	if billed == 0 {
		require.Empty(t, strings.Trim(c.Fee, "0."), "a call without talk costs nothing: CDR %s", dump)
	} else {
		require.Equal(t, answeredFee, c.Fee, "CDR: %s", dump)
	}
	require.NotContains(t, string(dump), consignee, "a CDR is merchant-facing and must not show B")
}

// ivrCase is a call that dials X, keys E over the prompt and is bridged
// to B: the tests differ only in how E is keyed and how vnum is set up.
type ivrCase struct {
	call  dtmfCall // attempts default to E once
	edits []yamlEdit
}

// runIVRCall runs c against a fresh vnum and the carrier of
// uas_carrier.xml, requires an answered, private call and returns its CDR.
func runIVRCall(t *testing.T, c ivrCase) cdr {
	t.Helper()
	pcaps := sippPrereqs(t)
	e, b := servedEnv(t, nil, c.edits...)

	stage := newStage(t, pcaps)
	call := c.call
	if call.attempts == nil {
		call.attempts = []string{b.Extension}
	}
	uacXML := renderDTMF(t, pcaps, stage, call)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_carrier.xml", 40*time.Second)
	caller := startSoftphone(t, stage, e, uacXML, 40*time.Second, hostNumber)

	requireBothSucceed(caller, carrier, 60*time.Second, 20*time.Second)
	return requireAnsweredCall(t, e, b, caller, carrier)
}

// runEndedIVRCall: the caller (account args) keys attempts and waits for
// vnum's BYE; B is never called. It returns the caller and the one CDR.
func runEndedIVRCall(t *testing.T, pcaps string, e *env, attempts []string, timeout, within time.Duration, args []string) (*sippPeer, cdr) {
	t.Helper()
	stage := newStage(t, pcaps)
	uacXML := renderDTMF(t, pcaps, stage, dtmfCall{attempts: attempts, hangup: true})
	caller := startSipp(t, stage, "softphone", uacXML, 0, timeout, args...)
	caller.requireSuccess(within)

	rows := e.waitCDRs(1, 10*time.Second)
	return caller, rows[0]
}
