package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/internal/pgtest"
	"github.com/vnum/vnum/sip/sipua"
)

// protectEnv is a served node on a real SQLite file with consignee
// protection configured, a clock the test sets, the node's info log, a
// simulated carrier, and merchant m1 with its softphone alice.
type protectEnv struct {
	t       *testing.T
	n       *node
	carrier *sipua.Carrier
	vnum    netip.AddrPort
	clock   *movedClock
	loc     *time.Location
	logs    *lockedBuffer
	phone   *sipua.Softphone
	ctx     context.Context
}

// startProtectNode starts the node at 10:00 on the consignee's clock
// (Asia/Shanghai), with tweak applied to its configuration.
func startProtectNode(t *testing.T, tweak func(*config.Config)) *protectEnv {
	t.Helper()
	useTempStore(t)
	loc, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	clock := &movedClock{}
	clock.set(nextAt(time.Now(), loc, 10, 0))
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n, carrier, vnum := startTestNodeAt(t, func(c *config.Config) {
		c.Protection.Timezone = "Asia/Shanghai"
		c.Protection.ConfirmTimeout = time.Second
		if tweak != nil {
			tweak(c)
		}
	}, clock.now, log)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	seedShopOne(t)
	phone, err := sipua.NewSoftphone("alice", "alice-secret", nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	return &protectEnv{t: t, n: n, carrier: carrier, vnum: vnum, clock: clock, loc: loc, logs: logs, phone: phone, ctx: ctx}
}

// useStore points the CLI and the nodes the test starts at a fresh store
// of driver: a PostgreSQL database, or a SQLite file.
func useStore(t *testing.T, driver string) {
	t.Helper()
	if driver == "postgres" {
		t.Setenv("VNUM_STORE_DRIVER", "postgres")
		t.Setenv("VNUM_STORE_DSN", pgtest.Shared(t).NewDatabase(t))
		return
	}
	useTempStore(t)
}

// seedShopOne adds merchant m1 with its account alice and host number
// 17000000001 through the CLI.
func seedShopOne(t *testing.T) {
	t.Helper()
	mustRun(t, "merchant", "add", "m1", "--name", "Shop One")
	mustRun(t, "account", "add", "m1", "alice", "--password", "alice-secret")
	mustRun(t, "number", "add", "17000000001")
}

// taken places a call from p that the consignee takes with key 1 after
// the notice, and hangs it up; it returns the caller's dialog.
func (e *protectEnv) taken(p *sipua.Softphone, dialled string) *sipgo.DialogClientSession {
	e.t.Helper()
	call := e.place(p, dialled)
	_, media := e.answered()
	e.key(media, "1")
	got := <-call
	require.NoError(e.t, got.err)
	require.NoError(e.t, got.d.Bye(e.ctx))
	e.idle()
	return got.d
}

// billedFrom hangs up the answered call d and checks its CDR: answered,
// its talk counted from the bridge (not before bridged), not from B's
// answer at answeredB.
func (e *protectEnv) billedFrom(d *sipgo.DialogClientSession, bridged, answeredB time.Time) {
	e.t.Helper()
	require.NoError(e.t, d.Bye(e.ctx))
	e.idle()
	row := e.cdr(d.InviteRequest.CallID().Value())
	require.Equal(e.t, "answered", row["disposition"])
	at, err := time.Parse(time.RFC3339, row["answered_at"].(string))
	require.NoError(e.t, err)
	require.False(e.t, at.Before(bridged.Truncate(time.Second)), "talk runs from the bridge (%s), not from B's answer (%s)", at, answeredB)
}

// bind creates a shipped binding of merchant m for order to the
// consignee and returns its id and its direct dial X-E.
func (e *protectEnv) bind(m, order string, extra ...string) (string, string) {
	e.t.Helper()
	args := append([]string{"binding", "create", "--merchant", m, "--order", order, "--consignee", consignee,
		"--order-status", "shipped", "--format", "json"}, extra...)
	var b struct{ ID, Host, Extension string }
	require.NoError(e.t, json.Unmarshal([]byte(mustRun(e.t, args...)), &b))
	return b.ID, b.Host + "-" + b.Extension
}

// refused places a direct dial that consignee protection must refuse
// before B rings: the caller gets code (never a 200), the carrier no
// INVITE. It returns the CDR of the call.
func (e *protectEnv) refused(p *sipua.Softphone, dialled string, code int) map[string]any {
	e.t.Helper()
	_, err := p.Call(e.ctx, e.vnum, dialled)
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(e.t, err, &dr, "want a final %d", code)
	require.Equal(e.t, code, dr.Res.StatusCode)
	e.idle()
	require.Zero(e.t, e.carrier.Pending(), "an INVITE reached the carrier")
	return e.cdr(dr.Res.CallID().Value())
}

// placed is the outcome of a call placed in the background.
type placed struct {
	d   *sipgo.DialogClientSession
	err error
}

// place dials in the background: the call waits for B (and B's keys).
func (e *protectEnv) place(p *sipua.Softphone, dialled string) <-chan placed {
	ch := make(chan placed, 1)
	go func() {
		d, err := p.Call(e.ctx, e.vnum, dialled)
		ch <- placed{d, err}
	}()
	return ch
}

// answered waits for the carrier to ring and answer the consignee, and
// returns the session and where vnum's leg B media is.
func (e *protectEnv) answered() (*sipgo.DialogServerSession, netip.AddrPort) {
	e.t.Helper()
	inv, err := e.carrier.NextInvite(15 * time.Second)
	require.NoError(e.t, err)
	require.Equal(e.t, consignee, inv.Recipient.User)
	ds, err := e.carrier.NextSession(15 * time.Second)
	require.NoError(e.t, err)
	media, err := sipua.MediaAddr(inv.Body())
	require.NoError(e.t, err)
	return ds, media
}

// key has the consignee key digits over RFC 4733.
func (e *protectEnv) key(media netip.AddrPort, digits string) {
	e.t.Helper()
	require.NoError(e.t, sipua.SendDigits(e.carrier.RTP, media, 101, digits))
}

// idle waits until the node holds no call.
func (e *protectEnv) idle() {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return e.n.sip.ActiveCalls() == 0 && e.n.ports.InUse() == 0 },
		15*time.Second, 20*time.Millisecond)
}

// cdr returns the finished CDR of the call whose leg A had callID.
func (e *protectEnv) cdr(callID string) map[string]any {
	e.t.Helper()
	out := mustRun(e.t, "cdr", "list", "--format", "json")
	require.NotContains(e.t, out, consignee)
	var cdrs []map[string]any
	require.NoError(e.t, json.Unmarshal([]byte(out), &cdrs))
	for _, c := range cdrs {
		if c["call_id"] == callID {
			require.NotNil(e.t, c["ended_at"])
			return c
		}
	}
	e.t.Fatalf("no CDR of call %s in %s", callID, out)
	return nil
}

// requireFree: the call cost nothing.
func requireFree(t *testing.T, cdr map[string]any, disposition string) {
	t.Helper()
	require.Equal(t, disposition, cdr["disposition"])
	require.EqualValues(t, 0, cdr["billed_minutes"])
	require.Equal(t, "0.00000", cdr["fee"])
}

// private scans every message the caller's phones and the carrier got:
// the callers never see B, B never sees a caller; and the node's info
// log never names B.
func (e *protectEnv) private(phones ...*sipua.Softphone) {
	e.t.Helper()
	for _, p := range append(phones, e.phone) {
		for _, m := range p.Received() {
			require.NotContains(e.t, m, consignee, "a caller saw B in:\n%s", m)
		}
		for _, m := range e.carrier.Received() {
			require.NotContains(e.t, m, p.User, "the carrier saw a caller in:\n%s", m)
			require.NotContains(e.t, m, "softphone", "the carrier saw a caller in:\n%s", m)
		}
	}
	require.NotContains(e.t, e.logs.String(), consignee, "B in the info log")
}

// metrics returns the node's /metrics.
func (e *protectEnv) metrics() string {
	e.t.Helper()
	c := config.Default()
	c.Admin.Listen = "127.0.0.1:0"
	url := startTestAdmin(e.t, c, e.n.store, e.n.stats())
	status, body := get(e.t, url+"/metrics", "")
	require.Equal(e.t, http.StatusOK, status)
	return body
}

// TestProtectionRefusesBeforeRinging: each rule refuses through real SIP
// before B rings (the carrier gets no INVITE): quiet hours across
// midnight on the consignee's clock, the daily cap, a one-way binding, an
// operator's block. The caller gets its status with no 200, the CDR its
// disposition, nothing is billed, one info line names the reason and
// not B, and /metrics counts each reason.
func TestProtectionRefusesBeforeRinging(t *testing.T) {
	e := startProtectNode(t, func(c *config.Config) {
		c.Protection.QuietHours = "21:00-08:00"
		c.Protection.CallsPerDay = 1
	})
	_, dial := e.bind("m1", "o1")

	e.clock.set(nextAt(e.clock.now(), e.loc, 23, 30))
	requireFree(t, e.refused(e.phone, dial, 480), "quiet_hours")
	e.clock.set(nextAt(e.clock.now(), e.loc, 2, 0)) // past midnight, still quiet
	requireFree(t, e.refused(e.phone, dial, 480), "quiet_hours")

	e.clock.set(nextAt(e.clock.now(), e.loc, 10, 0))
	call := e.place(e.phone, dial)
	e.answered()
	got := <-call
	require.NoError(t, got.err)
	require.NoError(t, got.d.Bye(e.ctx))
	e.idle()
	require.Equal(t, "answered", e.cdr(got.d.InviteRequest.CallID().Value())["disposition"])
	requireFree(t, e.refused(e.phone, dial, 480), "capped")
	// The cap counts the caller over all the merchant's bindings to B.
	_, other := e.bind("m1", "o2")
	requireFree(t, e.refused(e.phone, other, 480), "capped")

	_, oneWay := e.bind("m1", "o3", "--calls", "from_consignee")
	requireFree(t, e.refused(e.phone, oneWay, 403), "restricted")

	// The next local day the cap is lifted; an operator's block holds.
	e.clock.set(nextAt(e.clock.now(), e.loc, 9, 0))
	id, dial4 := e.bind("m1", "o4")
	out := mustRun(t, "block", "add", "--binding", id)
	require.NotContains(t, out, consignee)
	requireFree(t, e.refused(e.phone, dial4, 603), "blocked")

	logs := e.logs.String()
	require.Equal(t, 6, strings.Count(logs, `msg="call refused by consignee protection"`))
	for _, reason := range []string{"quiet_hours", "capped", "restricted", "blocked"} {
		require.Contains(t, logs, `reason=`+reason)
	}
	body := e.metrics()
	for reason, n := range map[string]string{"quiet_hours": "2", "capped": "2", "restricted": "1", "blocked": "1", "declined": "0"} {
		require.Contains(t, body, `vnum_calls_protected_total{reason="`+reason+`"} `+n)
	}
	e.private()
}

// TestConsigneeConfirms: with announce confirm, B hears the notice after
// answering while the caller waits unanswered; 1 (over RFC 4733, or SIP
// INFO from the carrier) bridges and bills talk from the bridge, not
// from B's answer; 2 and no key decline, free; 9 blocks the caller and
// declines. The block holds for the merchant's other binding to B and not
// for another merchant's; removing it lifts it.
func TestConsigneeConfirms(t *testing.T) {
	e := startProtectNode(t, func(c *config.Config) { c.Protection.Announce = "confirm" })
	_, dial := e.bind("m1", "o-1001")

	// 1 after a while: answered at the bridge.
	call := e.place(e.phone, dial)
	_, media := e.answered()
	answeredB := time.Now()
	time.Sleep(1500 * time.Millisecond)
	select {
	case got := <-call:
		t.Fatalf("the caller was answered before B keyed: %v", got.err)
	default:
	}
	keyed := time.Now()
	e.key(media, "1")
	got := <-call
	require.NoError(t, got.err)
	e.billedFrom(got.d, keyed, answeredB)

	// 1 by SIP INFO from the carrier.
	call = e.place(e.phone, dial)
	ds, _ := e.answered()
	info := sip.NewRequest(sip.INFO, ds.InviteRequest.Contact().Address)
	info.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	info.SetBody([]byte("Signal=1\r\nDuration=160\r\n"))
	res, err := ds.Do(e.ctx, info)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	got = <-call
	require.NoError(t, got.err)
	require.NoError(t, got.d.Bye(e.ctx))
	e.idle()

	// 2 declines; so does no key within confirm_timeout; 9 blocks and
	// declines: 603 each time, so the caller cannot tell a block.
	for _, keys := range []string{"2", "", "9"} {
		call = e.place(e.phone, dial)
		_, media = e.answered()
		if keys != "" {
			e.key(media, keys)
		}
		got = <-call
		var dr *sipgo.ErrDialogResponse
		require.ErrorAs(t, got.err, &dr)
		require.Equal(t, 603, dr.Res.StatusCode)
		e.idle()
		requireFree(t, e.cdr(dr.Res.CallID().Value()), "declined")
	}
	var blocks []map[string]any
	out := mustRun(t, "block", "list", "--format", "json")
	require.NotContains(t, out, consignee)
	require.NoError(t, json.Unmarshal([]byte(out), &blocks))
	require.Len(t, blocks, 1)
	require.Equal(t, "consignee", blocks[0]["source"])

	// The merchant's other binding to B: refused, B never rings.
	_, other := e.bind("m1", "o-1002")
	requireFree(t, e.refused(e.phone, other, 603), "blocked")
	// Another merchant's binding to B rings.
	mustRun(t, "merchant", "add", "m2", "--name", "Shop Two")
	mustRun(t, "account", "add", "m2", "bob", "--password", "bob-secret")
	bob, err := sipua.NewSoftphone("bob", "bob-secret", nil)
	require.NoError(t, err)
	t.Cleanup(bob.Close)
	_, theirs := e.bind("m2", "o-2001")
	e.taken(bob, theirs)
	// Removing the block lifts it.
	mustRun(t, "block", "remove", blocks[0]["id"].(string))
	e.taken(e.phone, other)

	require.Contains(t, e.metrics(), `vnum_calls_protected_total{reason="declined"} 3`)
	e.private(bob)
}

// TestBlockKeyMidCall: the consignee keys protection.block_key (*9)
// during a bridged call: the call ends (the caller gets a BYE), its talk
// is billed as answered and hung up by the callee, and the caller is
// blocked for the consignee.
func TestBlockKeyMidCall(t *testing.T) {
	e := startProtectNode(t, nil)
	_, dial := e.bind("m1", "o1")
	call := e.place(e.phone, dial)
	_, media := e.answered()
	got := <-call
	require.NoError(t, got.err)
	e.key(media, "*9")
	select {
	case <-got.d.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the block key did not end the call")
	}
	e.idle()
	row := e.cdr(got.d.InviteRequest.CallID().Value())
	require.Equal(t, "answered", row["disposition"])
	require.Equal(t, "callee", row["hangup_by"])
	out := mustRun(t, "block", "list", "--format", "json")
	require.NotContains(t, out, consignee)
	require.Contains(t, out, `"source": "consignee"`)
	requireFree(t, e.refused(e.phone, dial, 603), "blocked")
	e.private()
}

// TestCapRacedAcrossNodes: eight calls from one merchant to one
// consignee race through two nodes sharing one store for the three
// places of calls_per_day: exactly three ring B (the carriers get three
// INVITEs in all) and are answered, the other five are refused as capped
// before B rings. On PostgreSQL (two machines) and on one SQLite file.
func TestCapRacedAcrossNodes(t *testing.T) {
	const calls, capacity = 8, 3
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			useStore(t, driver)
			loc, err := time.LoadLocation("Asia/Shanghai")
			require.NoError(t, err)
			clock := &movedClock{}
			clock.set(nextAt(time.Now(), loc, 10, 0))
			node := func(id string) func(*config.Config) {
				return func(c *config.Config) {
					c.Node.ID = id
					c.Protection.CallsPerDay = capacity
				}
			}
			quiet := slog.New(slog.DiscardHandler)
			n1, car1, vnum1 := startTestNodeAt(t, node("node-1"), clock.now, quiet)
			n2, car2, vnum2 := startTestNodeAt(t, node("node-2"), clock.now, quiet)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			seedShopOne(t)
			var b struct{ Host, Extension string }
			require.NoError(t, json.Unmarshal([]byte(mustRun(t, "binding", "create", "--merchant", "m1", "--order", "o1",
				"--consignee", consignee, "--order-status", "shipped", "--format", "json")), &b))

			codes := make(chan int, calls)
			var wg sync.WaitGroup
			for i := range calls {
				phone, err := sipua.NewSoftphone("alice", "alice-secret", nil)
				require.NoError(t, err)
				t.Cleanup(phone.Close)
				vnum := vnum1
				if i%2 == 1 {
					vnum = vnum2
				}
				wg.Go(func() {
					d, err := phone.Call(ctx, vnum, b.Host+"-"+b.Extension)
					var dr *sipgo.ErrDialogResponse
					switch {
					case err == nil:
						codes <- 200
						_ = d.Bye(ctx)
					case errors.As(err, &dr):
						codes <- dr.Res.StatusCode
					default:
						codes <- 0
					}
				})
			}
			wg.Wait()
			close(codes)
			got := map[int]int{}
			for c := range codes {
				got[c]++
			}
			require.Equal(t, map[int]int{200: capacity, 480: calls - capacity}, got)
			require.Equal(t, capacity, car1.Pending()+car2.Pending(), "INVITEs that reached the carriers")
			require.Eventually(t, func() bool { return n1.sip.ActiveCalls()+n2.sip.ActiveCalls() == 0 }, 15*time.Second, 20*time.Millisecond)
			var cdrs []map[string]any
			require.NoError(t, json.Unmarshal([]byte(mustRun(t, "cdr", "list", "--format", "json")), &cdrs))
			dispositions := map[any]int{}
			for _, c := range cdrs {
				dispositions[c["disposition"]]++
			}
			require.Equal(t, map[any]int{"answered": capacity, "capped": calls - capacity}, dispositions)
		})
	}
}

// TestConsigneeInformed: with announce inform, B hears the notice after
// answering and the call is bridged when it ends, no key needed; the
// caller is answered only then, and talk is billed from the bridge.
func TestConsigneeInformed(t *testing.T) {
	e := startProtectNode(t, func(c *config.Config) { c.Protection.Announce = "inform" })
	_, dial := e.bind("m1", "o-1001")
	call := e.place(e.phone, dial)
	e.answered()
	answeredB := time.Now()
	got := <-call
	require.NoError(t, got.err)
	bridged := time.Now()
	require.Greater(t, bridged.Sub(answeredB), time.Second, "the caller was answered before the notice ended")
	e.billedFrom(got.d, answeredB.Add(time.Second), answeredB)
	e.private()
}

// TestCourierBlockedByKey: a PSTN caller (a courier over the trunk)
// reaches the consignee, who hears "a courier" and keys 9: the courier's
// number is blocked for that consignee, listed without B, and its next
// call through any binding to B is refused; the merchant's own calls
// still ring.
func TestCourierBlockedByKey(t *testing.T) {
	e := startProtectNode(t, func(c *config.Config) {
		c.Protection.Announce = "confirm"
		c.Trunk.InboundCIDRs = []string{"127.0.0.0/8"}
	})
	_, dial := e.bind("m1", "o1")
	courier, err := sipua.NewSoftphone("13700137000", "", nil)
	require.NoError(t, err)
	t.Cleanup(courier.Close)
	call := e.place(courier, dial)
	_, media := e.answered()
	e.key(media, "9")
	got := <-call
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(t, got.err, &dr)
	require.Equal(t, 603, dr.Res.StatusCode)
	e.idle()
	out := mustRun(t, "block", "list", "--format", "json")
	require.NotContains(t, out, consignee)
	require.Contains(t, out, `"caller": "+8613700137000"`)
	_, other := e.bind("m1", "o2")
	requireFree(t, e.refused(courier, other, 603), "blocked")
	e.taken(e.phone, dial)
	e.private(courier)
}

// TestIVRCallerRefused: a caller the IVR answered keys E in quiet hours:
// it hears the prompt and gets a BYE (it was answered to key E), B never
// rings, and the call is free.
func TestIVRCallerRefused(t *testing.T) {
	e := startProtectNode(t, func(c *config.Config) { c.Protection.QuietHours = "21:00-08:00" })
	_, dial := e.bind("m1", "o1")
	host, ext, _ := strings.Cut(dial, "-")
	e.clock.set(nextAt(e.clock.now(), e.loc, 22, 0))
	d, err := e.phone.Call(e.ctx, e.vnum, host)
	require.NoError(t, err)
	media, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	require.NoError(t, sipua.SendDigits(e.phone.RTP, media, 101, ext))
	select {
	case <-d.Context().Done():
	case <-time.After(30 * time.Second):
		t.Fatal("vnum did not hang up the refused caller")
	}
	e.idle()
	require.Zero(t, e.carrier.Pending(), "an INVITE reached the carrier")
	requireFree(t, e.cdr(d.InviteRequest.CallID().Value()), "quiet_hours")
	e.private()
}
