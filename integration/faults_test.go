package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/pgtest"
	"github.com/vnum/vnum/sip/sipua"
)

// Nothing lost through faults: the ends of calls that a store outage kept
// from the store survive a stop of vnum and are billed after it; the legs
// of calls a crash cut are hung up by the next start; neither shows the
// consignee's number in vnum's log.

// faultEnv is a vnum whose carrier is a sipgo UA of the test's own, which
// answers every INVITE and records every message it gets, and whose
// trunk callers come from 127.0.0.1.
type faultEnv struct {
	*env
	carrier *sipua.Carrier
	vnum    netip.AddrPort
	dial    string // X-E of the seeded binding
}

// newFaultEnv writes the configuration for store driver and dsn, seeds
// the store and starts `vnum serve`.
func newFaultEnv(t *testing.T, driver, dsn string) *faultEnv {
	t.Helper()
	e := newEnv(t, "")
	carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
	require.NoError(t, err)
	t.Cleanup(carrier.Close)
	e.setYAML(fmt.Sprintf("sip:127.0.0.1:%d;", e.carrierPort), fmt.Sprintf("sip:127.0.0.1:%d;", carrier.Addr.Port()))
	e.setYAML("inbound_cidrs: []", "inbound_cidrs: [127.0.0.1/32]")
	// No RTP flows in these tests: the media timeout must not end a call.
	e.setYAML("  timeout: 20s", "  timeout: 120s")
	e.setYAML(fmt.Sprintf("  driver: sqlite\n  dsn: %s\n", filepath.Join(e.dir, "vnum.db")),
		fmt.Sprintf("  driver: %s\n  dsn: %q\n  timeout: 1s\n", driver, dsn))
	b := e.seed()
	e.startServe()
	return &faultEnv{env: e, carrier: carrier, dial: hostNumber + "-" + b.Extension,
		vnum: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(e.sipPort))}
}

// bridged is a call the test placed, answered at both ends.
type bridged struct {
	phone    *sipua.Softphone           // the caller
	a        *sipgo.DialogClientSession // the caller's leg, as the caller has it
	b        *sipgo.DialogServerSession // leg B, as the carrier has it
	answered time.Time
}

// call places a call from phone and waits until the carrier answered it
// and its record shows the answer (and so keeps the legs' dialogs).
func (f *faultEnv) call(ctx context.Context, phone *sipua.Softphone) bridged {
	f.t.Helper()
	d, err := phone.Call(ctx, f.vnum, f.dial)
	require.NoError(f.t, err)
	leg, err := f.carrier.NextSession(20 * time.Second)
	require.NoError(f.t, err, "vnum never bridged the call to the carrier")
	waitOpenCDR(f.t, f.env, d.InviteRequest.CallID().Value())
	return bridged{phone: phone, a: d, b: leg, answered: time.Now()}
}

// logLines reads a JSON log and returns the lines whose msg starts with
// prefix.
func logLines(t *testing.T, path, prefix string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	for _, l := range strings.Split(string(data), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// requireNoConsignee checks that a log of vnum at info level never names
// the consignee.
func requireNoConsignee(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(data), consignee, "the consignee's number in %s", path)
}

// TestSpoolKeepsEndsThroughStop: with PostgreSQL stopped, answered calls
// end (their callers hang up) and their ends wait in vnum; SIGTERM then
// stops vnum, whose drain says in one line that the ends are spooled for
// the next start. After PostgreSQL and vnum start again, every call is
// answered and billed with the talk time it had, none interrupted, and
// the spool is gone.
func TestSpoolKeepsEndsThroughStop(t *testing.T) {
	t.Parallel()
	const calls = 3
	srv := pgtest.Start(t) // its own server: stopping it must not hit other tests
	f := newFaultEnv(t, "postgres", srv.NewDatabase(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var up []bridged
	for range calls {
		phone, err := sipua.NewSoftphone(pstnCaller, "not-used-on-the-trunk", nil)
		require.NoError(t, err)
		t.Cleanup(phone.Close)
		up = append(up, f.call(ctx, phone))
	}

	require.NoError(t, srv.Stop(), "stopping PostgreSQL")
	held := map[string]int{} // leg A's Call-ID → seconds the call was up
	for _, c := range up {
		time.Sleep(1100 * time.Millisecond) // calls of different lengths
		require.NoError(t, c.a.Bye(ctx), "the caller hangs up during the outage")
		held[c.a.InviteRequest.CallID().Value()] = int(time.Since(c.answered).Seconds())
		select {
		case <-c.b.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("vnum did not hang up leg B after the caller's BYE")
		}
	}
	waitMetric(t, f.env, "vnum_cdrs_pending", 30*time.Second, func(v float64) bool { return v == calls },
		"the ends wait for the store")

	require.NoError(t, f.serve.cmd.Process.Signal(syscall.SIGTERM))
	code, err := f.serve.wait(60 * time.Second)
	require.NoError(t, err)
	require.Zero(t, code, "vnum serve's exit status after SIGTERM")
	said := logLines(t, f.serve.logPath, "CDR ends not written at shutdown")
	require.Len(t, said, 1, "the drain says it once:\n%s", f.serve.logTail(30))
	require.EqualValues(t, calls, said[0]["count"])
	require.EqualValues(t, calls, said[0]["spooled"])
	spoolPath, _ := said[0]["spool"].(string)
	require.FileExists(t, spoolPath)
	require.Equal(t, f.dir, filepath.Dir(spoolPath), "a PostgreSQL node's spool is beside its configuration file")
	requireNoConsignee(t, f.serve.logPath)

	require.NoError(t, srv.Start(), "starting PostgreSQL again")
	f.serve = startProc(t, "vnum serve (restarted)", f.dir, filepath.Join(f.dir, "vnum-serve-restarted.log"),
		cleanEnviron(), f.bin, "--config", f.config, "serve")
	f.waitSIP(30 * time.Second)
	took := logLines(t, f.serve.logPath, "took the node's lease")
	require.Len(t, took, 1)
	require.EqualValues(t, calls, took[0]["spooled_ends_written"])
	require.EqualValues(t, 0, took[0]["interrupted_calls_closed"])
	require.NoFileExists(t, spoolPath, "every end written: the spool is gone")

	rows, raw := f.cdrs()
	require.Len(t, rows, calls, raw)
	for _, r := range rows {
		dump, _ := json.Marshal(r)
		require.True(t, r.ended(), "%s", dump)
		require.Equal(t, "answered", r.Disposition, "the spooled end wins: %s", dump)
		require.Equal(t, "caller", r.HangupBy, "%s", dump)
		talk := number(t, r.TalkSeconds)
		want := held[r.CallID]
		require.GreaterOrEqual(t, talk, want-1, "up %d s, billed %d s: %s", want, talk, dump)
		require.LessOrEqual(t, talk, want+2, "the outage after the hang-up is not billed: %s", dump)
		require.Equal(t, answeredFee, r.Fee, "%s", dump)
		require.NotContains(t, string(dump), consignee)
	}
	requireNoConsignee(t, f.serve.logPath)
}

// TestCrashHangsUpLegs: `vnum serve` is killed (SIGKILL) with calls up,
// from merchant softphones and from the trunk; the carrier keeps its
// legs and the callers theirs. The next start closes the calls as
// interrupted and sends a BYE in every leg: the carrier and each caller
// get one per call, in the call's dialog, and answer it; the log says how
// many legs were ended and never names the consignee.
func TestCrashHangsUpLegs(t *testing.T) {
	t.Parallel()
	f := newFaultEnv(t, "sqlite", filepath.Join(t.TempDir(), "vnum.db"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The merchant's softphone comes from 127.0.0.2, outside the trunk's
	// 127.0.0.1, and answers vnum's digest challenge.
	phone, err := sipua.NewSoftphoneAt(netip.MustParseAddr("127.0.0.2"), account, password, nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	pstn, err := sipua.NewSoftphone(pstnCaller, "not-used-on-the-trunk", nil)
	require.NoError(t, err)
	t.Cleanup(pstn.Close)
	up := []bridged{f.call(ctx, phone), f.call(ctx, phone), f.call(ctx, pstn)}

	pid := f.serve.cmd.Process.Pid
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	_, err = f.serve.wait(10 * time.Second)
	require.NoError(t, err)
	firstLog := f.serve.logPath
	for i, c := range up {
		select {
		case <-c.a.Context().Done():
			t.Fatalf("call %d: leg A ended by itself", i)
		case <-c.b.Context().Done():
			t.Fatalf("call %d: leg B ended by itself", i)
		default:
		}
	}
	before := byes(f.carrier.Received())

	f.serve = startProc(t, "vnum serve (restarted)", f.dir, filepath.Join(f.dir, "vnum-serve-restarted.log"),
		cleanEnviron(), f.bin, "--config", f.config, "serve")
	f.waitSIP(20 * time.Second)
	for i, c := range up {
		for name, done := range map[string]<-chan struct{}{"leg A": c.a.Context().Done(), "leg B": c.b.Context().Done()} {
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("call %d: %s still up after the restart\n%s", i, name, f.serve.logTail(30))
			}
		}
	}
	after := byes(f.carrier.Received())
	for _, c := range up {
		id := c.b.InviteRequest.CallID().Value()
		require.Zero(t, before[id], "no BYE to the carrier before the restart")
		require.Equal(t, 1, after[id], "one BYE to the carrier in leg B %s", id)
	}
	for _, c := range up {
		id := c.a.InviteRequest.CallID().Value()
		require.Equal(t, 1, byes(c.phone.Received())[id], "one BYE to the caller in leg A %s", id)
	}
	var said []map[string]any
	require.Eventually(t, func() bool {
		said = logLines(t, f.serve.logPath, "ended the legs of interrupted calls")
		return len(said) == 1
	}, 10*time.Second, 100*time.Millisecond)
	require.EqualValues(t, 6, said[0]["legs"])
	require.EqualValues(t, 6, said[0]["ended"])

	rows, raw := f.cdrs()
	require.Len(t, rows, len(up), raw)
	for _, r := range rows {
		require.Equal(t, "interrupted", r.Disposition, raw)
		require.Equal(t, "system", r.HangupBy, raw)
	}
	require.NotContains(t, raw, consignee)
	requireNoConsignee(t, firstLog)
	requireNoConsignee(t, f.serve.logPath)
	// Neither side learnt the other's identity from the BYEs.
	for _, m := range f.carrier.Received() {
		require.NotContains(t, m, account)
		require.NotContains(t, m, pstnCaller)
	}
	for _, m := range append(phone.Received(), pstn.Received()...) {
		require.NotContains(t, m, consignee)
	}
}

// byes counts the BYE requests among msgs, by Call-ID.
func byes(msgs []string) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		if !strings.HasPrefix(m, "BYE ") {
			continue
		}
		for _, l := range strings.Split(m, "\r\n") {
			if v, ok := strings.CutPrefix(l, "Call-ID: "); ok {
				out[strings.TrimSpace(v)]++
			}
		}
	}
	return out
}
