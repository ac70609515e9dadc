package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	_ "github.com/mattn/go-sqlite3" // the test's own connection to the store's file
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/pgtest"
	"github.com/vnum/vnum/internal/testdisk"
	"github.com/vnum/vnum/sip/sipua"
)

// The store going away while vnum serves (issue 9, README "SIP behaviour in short"): new calls are
// refused with 503 and Retry-After within store.timeout, the call in
// progress keeps its media, the end of its record waits in vnum until the
// store is back (vnum_cdrs_pending), and vnum recovers by itself.

const (
	// outageStoreTimeout is store.timeout in these tests.
	outageStoreTimeout = time.Second
	// refuseSlack is what a refusal may take on top of store.timeout: the
	// INVITE's way through a busy machine and the 503's way back.
	refuseSlack = 2 * time.Second
	// outageFor is how long the store stays away.
	outageFor = 10 * time.Second
	// outageRefusals is how many new calls are tried during the outage.
	outageRefusals = 3
)

// storeOutage is one way for the store to go away and come back.
type storeOutage struct {
	driver, dsn string
	down, up    func()
}

// TestStoreOutage stops the store under a `vnum serve` with a call in
// progress, media flowing both ways: PostgreSQL stopped at once (a crash
// of the database server), a SQLite file whose write lock another
// process holds (BEGIN EXCLUSIVE), or a SQLite file whose disk is full (a
// tmpfs of the test's own, filled; the spool beside the store cannot keep
// the call's end either, so it waits in memory). During the outage each new call gets
// 503 with Retry-After within store.timeout, counted in
// vnum_calls_refused_total{reason="store_slow"}; the call in progress
// keeps its media both ways and is hung up by the caller; its CDR's end
// waits (vnum_cdrs_pending ≥ 1). When the store is back, with nothing
// done to vnum, the end is written (vnum_cdrs_pending 0, the row answered
// with the talk time the call had) and a new call goes through.
func TestStoreOutage(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		srv := pgtest.Start(t) // its own server: stopping it must not hit other tests
		runStoreOutage(t, storeOutage{
			driver: "postgres", dsn: srv.NewDatabase(t),
			down: func() { require.NoError(t, srv.Stop(), "stopping PostgreSQL") },
			up:   func() { require.NoError(t, srv.Start(), "starting PostgreSQL again") },
		})
	})
	t.Run("sqlite-locked", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "outage.db")
		var lock *sql.Conn
		var db *sql.DB
		runStoreOutage(t, storeOutage{
			driver: "sqlite", dsn: path,
			down: func() { db, lock = lockSQLite(t, path) },
			up: func() {
				_, err := lock.ExecContext(context.Background(), "ROLLBACK")
				require.NoError(t, err, "releasing the write lock")
				require.NoError(t, lock.Close())
				require.NoError(t, db.Close())
			},
		})
	})
	t.Run("sqlite-full", func(t *testing.T) {
		t.Parallel()
		dir := testdisk.Mount(t, 32<<20)
		var free func()
		runStoreOutage(t, storeOutage{
			driver: "sqlite", dsn: filepath.Join(dir, "vnum.db"),
			down: func() { free = testdisk.Fill(t, dir) },
			up:   func() { free() },
		})
	})
}

// lockSQLite takes the write lock of the SQLite file at path on a
// connection of the test's own, as another process's long transaction
// would, and holds it until the returned connection ends it.
func lockSQLite(t *testing.T, path string) (*sql.DB, *sql.Conn) {
	t.Helper()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=10000")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, "BEGIN EXCLUSIVE")
	require.NoError(t, err, "taking the write lock of %s", path)
	return db, conn
}

func runStoreOutage(t *testing.T, o storeOutage) {
	e := newEnv(t, "")
	carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
	require.NoError(t, err)
	t.Cleanup(carrier.Close)
	e.setYAML(fmt.Sprintf("sip:127.0.0.1:%d;", e.carrierPort), fmt.Sprintf("sip:127.0.0.1:%d;", carrier.Addr.Port()))
	// The callers are PSTN callers on the carrier's trunk (127.0.0.1).
	e.setYAML("inbound_cidrs: []", "inbound_cidrs: [127.0.0.1/32]")
	e.setYAML(fmt.Sprintf("  driver: sqlite\n  dsn: %s\n", filepath.Join(e.dir, "vnum.db")),
		fmt.Sprintf("  driver: %s\n  dsn: %q\n  timeout: %s\n", o.driver, o.dsn, outageStoreTimeout))
	b := e.seed()
	e.startServe()
	vnum := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(e.sipPort))
	dial := hostNumber + "-" + b.Extension
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A call in progress, answered, media relayed both ways.
	caller, err := sipua.NewSoftphone(pstnCaller, "not-used-on-the-trunk", nil)
	require.NoError(t, err)
	t.Cleanup(caller.Close)
	d, err := caller.Call(ctx, vnum, dial)
	require.NoError(t, err, "the call before the outage")
	invite, err := carrier.NextInvite(20 * time.Second)
	require.NoError(t, err)
	leg, err := carrier.NextSession(20 * time.Second)
	require.NoError(t, err, "vnum never bridged the call to the carrier")
	answered := time.Now()
	aMedia, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	bMedia, err := sipua.MediaAddr(invite.Body())
	require.NoError(t, err)
	callID := d.InviteRequest.CallID().Value()
	requireTalking(ctx, t, caller, carrier, aMedia, bMedia, 0xA1, "before the outage")
	open := waitOpenCDR(t, e, callID)
	t.Logf("the call in progress: %s, its row open with %s s of talk", callID, open.TalkSeconds)
	refusedBefore := refusedByReason(t, e)

	o.down()
	downAt := time.Now()
	t.Logf("the store is down (%s)", o.driver)

	// New calls: 503 with Retry-After, each within store.timeout.
	other, err := sipua.NewSoftphone(pstnCaller, "not-used-on-the-trunk", nil)
	require.NoError(t, err)
	t.Cleanup(other.Close)
	for i := range outageRefusals {
		start := time.Now()
		nd, err := other.Invite(ctx, vnum, dial)
		require.NoError(t, err)
		err = nd.WaitAnswer(ctx, sipgo.AnswerOptions{})
		took := time.Since(start)
		var refused *sipgo.ErrDialogResponse
		require.ErrorAs(t, err, &refused, "new call %d during the outage", i+1)
		res := refused.Res
		t.Logf("new call %d during the outage: %s after %s", i+1, res.StartLine(), took.Round(time.Millisecond))
		require.Equal(t, 503, res.StatusCode, "new call %d during the outage: %s", i+1, res.StartLine())
		require.NotNil(t, res.GetHeader("Retry-After"), "a 503 without Retry-After: %s", res)
		require.LessOrEqual(t, took, outageStoreTimeout+refuseSlack,
			"new call %d: refused after %s, store.timeout is %s", i+1, took, outageStoreTimeout)
		_ = nd.Close()
	}
	refusedDuring := refusedByReason(t, e)
	t.Logf("vnum_calls_refused_total before the outage %v, during it %v", refusedBefore, refusedDuring)
	require.Equal(t, refusedBefore["store_slow"]+outageRefusals, refusedDuring["store_slow"],
		`each call refused for the store is counted in vnum_calls_refused_total{reason="store_slow"}: %v`, refusedDuring)

	// The call in progress goes on, media and all; its caller hangs up.
	requireTalking(ctx, t, caller, carrier, aMedia, bMedia, 0xA2, "during the outage")
	require.NoError(t, d.Bye(ctx), "the caller hangs up during the outage")
	hungUp := time.Now()
	select {
	case <-leg.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("vnum did not hang up leg B after the caller's BYE")
	}
	waitMetric(t, e, "vnum_cdrs_pending", 15*time.Second, func(v float64) bool { return v >= 1 },
		"the end of the call's record waits for the store")

	// The outage itself lasts outageFor, or until now when what came
	// before took longer.
	time.Sleep(time.Until(downAt.Add(outageFor)))
	o.up()
	t.Logf("the store is back after %s", time.Since(downAt).Round(time.Millisecond))

	// vnum recovers by itself: the record's end is written...
	waitMetric(t, e, "vnum_cdrs_pending", 30*time.Second, func(v float64) bool { return v == 0 },
		"the backlog written once the store is back")
	rows, raw := e.cdrs()
	var row *cdr
	for i := range rows {
		if rows[i].CallID == callID {
			row = &rows[i]
		}
	}
	require.NotNil(t, row, "no CDR of the call in progress: %s", raw)
	dump, _ := json.MarshalIndent(row, "", "  ")
	t.Logf("the CDR of the call hung up during the outage: %s", dump)
	require.True(t, row.ended(), "CDR: %s", dump)
	require.Equal(t, "answered", row.Disposition, "CDR: %s", dump)
	require.Equal(t, "caller", row.HangupBy, "CDR: %s", dump)
	talk := number(t, row.TalkSeconds)
	held := int(hungUp.Sub(answered).Seconds())
	require.GreaterOrEqual(t, talk, held-1, "the call was up %d s, its row shows %d s of talk: %s", held, talk, dump)
	// The end written late is the end the call had: the outage after the
	// caller hung up is not billed.
	require.LessOrEqual(t, talk, held+2, "the call was up %d s, its row shows %d s of talk: %s", held, talk, dump)
	require.GreaterOrEqual(t, talk, number(t, open.TalkSeconds), "CDR: %s", dump)
	require.NotContains(t, string(dump), consignee)

	// ...and a new call goes through.
	after, err := sipua.NewSoftphone(pstnCaller, "not-used-on-the-trunk", nil)
	require.NoError(t, err)
	t.Cleanup(after.Close)
	nd, err := after.Call(ctx, vnum, dial)
	require.NoError(t, err, "a new call after the store came back")
	_, err = carrier.NextSession(20 * time.Second)
	require.NoError(t, err, "vnum never bridged the call after the outage")
	require.NoError(t, nd.Bye(ctx))
	rows = e.waitCDRs(2, 20*time.Second) // refused calls leave no row
	for _, r := range rows {
		require.Equal(t, "answered", r.Disposition, "CDR %+v", r)
	}
}

// requireTalking sends RTP both ways of the call for a moment, under SSRC
// a from the caller and b+1 from B, and requires each side to hear the
// other through vnum's relay.
func requireTalking(ctx context.Context, t *testing.T, caller *sipua.Softphone, carrier *sipua.Carrier, aMedia, bMedia netip.AddrPort, ssrc uint32, when string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = sipua.SendAudio(ctx, caller.RTP, aMedia, ssrc, 100) }()
	go func() { _ = sipua.SendAudio(ctx, carrier.RTP, bMedia, ssrc+1, 100) }()
	done := make(chan int)
	go func() { done <- sipua.CountRTP(caller.RTP, 1500*time.Millisecond, ssrc+1) }()
	heardA := sipua.CountRTP(carrier.RTP, 1500*time.Millisecond, ssrc)
	heardB := <-done
	t.Logf("%s: B heard %d packets of the caller, the caller %d of B", when, heardA, heardB)
	require.Greater(t, heardA, 10, "B hears the caller %s", when)
	require.Greater(t, heardB, 10, "the caller hears B %s", when)
}

// waitOpenCDR waits until the row of callID shows the call answered and
// not ended.
func waitOpenCDR(t *testing.T, e *env, callID string) cdr {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, raw := e.cdrs()
		for _, r := range rows {
			if r.CallID == callID && r.AnsweredAt != nil && !r.ended() {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no open, answered CDR of %s:\n%s", callID, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metrics returns vnum's /metrics: each sample line's value by its name
// with labels, e.g. `vnum_calls_refused_total{reason="store_slow"}`.
func metrics(t *testing.T, e *env) map[string]float64 {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", e.adminPort))
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, "GET /metrics: %s", body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// refusedByReason reads vnum_calls_refused_total by reason.
func refusedByReason(t *testing.T, e *env) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	const prefix = `vnum_calls_refused_total{reason="`
	for k, v := range metrics(t, e) {
		if strings.HasPrefix(k, prefix) {
			out[strings.TrimSuffix(strings.TrimPrefix(k, prefix), `"}`)] = v
		}
	}
	require.NotEmpty(t, out, "no vnum_calls_refused_total in /metrics")
	return out
}

// waitMetric polls /metrics until the sample name satisfies ok.
func waitMetric(t *testing.T, e *env, name string, within time.Duration, ok func(float64) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, found := metrics(t, e)[name]
		if found && ok(v) {
			t.Logf("%s: %s %v", what, name, v)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s is %v (present: %v) after %s\n%s", what, name, v, found, within, e.serve.logTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
