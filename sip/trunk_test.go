package sip

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/sip/sipua"
)

// optionsResponder is a carrier's signalling as a keepalive sees it: a
// UDP socket that answers OPTIONS 200 while answering is set, and says
// nothing otherwise.
type optionsResponder struct {
	conn      *net.UDPConn
	answering atomic.Bool
	seen      atomic.Int64
}

func newOptionsResponder(t *testing.T) *optionsResponder {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	r := &optionsResponder{conn: conn}
	r.answering.Store(true)
	t.Cleanup(func() { _ = conn.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			req, ok := msg.(*sip.Request)
			if err != nil || !ok || req.Method != sip.OPTIONS {
				continue
			}
			r.seen.Add(1)
			if !r.answering.Load() {
				continue
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			if _, err := conn.WriteToUDP([]byte(res.String()), from); err != nil {
				return
			}
		}
	}()
	return r
}

// TestTrunkKeepalive: OPTIONS go to the outbound trunk every keepalive
// period; three unanswered in a row count it down (TrunkUp false, with
// why, one WARN line), and the first answer after counts it up again
// (one WARN line more).
func TestTrunkKeepalive(t *testing.T) {
	t.Parallel()
	trunk := newOptionsResponder(t)
	e := newTestEnv(t, "answer", func(o *Options) {
		o.TrunkOutbound = "sip:" + trunk.conn.LocalAddr().String() + ";transport=udp"
		o.TrunkKeepalive = 100 * time.Millisecond
	})
	require.Eventually(t, func() bool { return trunk.seen.Load() >= 2 }, 10*time.Second, 10*time.Millisecond, "keepalives are sent")
	up, why := e.srv.TrunkUp()
	require.True(t, up, why)

	trunk.answering.Store(false)
	require.Eventually(t, func() bool { up, _ := e.srv.TrunkUp(); return !up }, 10*time.Second, 10*time.Millisecond)
	up, why = e.srv.TrunkUp()
	require.False(t, up)
	require.Contains(t, why, "3 keepalives in a row unanswered")
	e.waitLogged("trunk down: keepalives unanswered", 1)
	require.Equal(t, 1, strings.Count(e.logs.String(), "level=WARN msg=\"trunk down"), "one line when it goes down")

	trunk.answering.Store(true)
	require.Eventually(t, func() bool { up, _ := e.srv.TrunkUp(); return up }, 10*time.Second, 10*time.Millisecond)
	e.waitLogged("trunk up again", 1)
	require.Equal(t, 1, strings.Count(e.logs.String(), "level=WARN msg=\"trunk down"))
}

// TestTrunkWatchCounts pins the rule: a miss or two is not down, the
// third in a row is, and one answer is up again.
func TestTrunkWatchCounts(t *testing.T) {
	w := newTrunkWatch()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	miss := errors.New("no answer")
	for i := 1; i <= 2; i++ {
		down, _, misses, _ := w.answered(miss, now)
		require.False(t, down)
		require.Equal(t, i, misses)
	}
	_, back, _, _ := w.answered(nil, now) // an answer resets the count
	require.False(t, back)
	for i := 1; i <= 3; i++ {
		down, _, _, _ := w.answered(miss, now)
		require.Equal(t, i == 3, down, "miss %d", i)
	}
	down, _, _, _ := w.answered(miss, now)
	require.False(t, down, "down once, not again at every miss")
	up, why := w.state()
	require.False(t, up)
	require.Contains(t, why, "no answer")
	_, back, _, downFor := w.answered(nil, now.Add(time.Minute))
	require.True(t, back)
	require.Equal(t, time.Minute, downFor)
}

// TestLegBFailuresCounted: a busy consignee is counted under 486.
func TestLegBFailuresCounted(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "busy", nil)
	_, o, done := dialObserved(t.Context(), t, e.phone, e.vnum, testHost+"-"+testExt)
	<-done
	requireRefusedUnanswered(t, o.err, 486, e.phone.Received())
	e.router.waitEnded(t)
	require.Equal(t, map[string]int64{"486": 1}, e.srv.LegBFailures())
}

// TestCallLogsTraceBothLegs: every log line of a call names vnum's call
// id and leg A's Call-ID, and leg B's Call-ID is the call id, so that a
// carrier's ticket quoting either Call-ID finds the call; the line of a
// failed login names the user it tried.
func TestCallLogsTraceBothLegs(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := e.phone.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err)
	inv := nextInvite(t, e.carrier)
	nextSession(t, e.carrier)
	e.waitLogged("call bridged", 1)
	require.NoError(t, d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	e.waitLogged("call ended", 1) // written once the CDR is
	require.Equal(t, cdr.ID, inv.CallID().Value(), "leg B's Call-ID is vnum's call id")
	aCallID := d.InviteRequest.CallID().Value()
	lines := 0
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if !strings.Contains(l, "call="+cdr.ID) {
			continue
		}
		lines++
		require.Contains(t, l, "a_call_id="+aCallID, "a call's line without leg A's Call-ID: %s", l)
	}
	require.GreaterOrEqual(t, lines, 3, "call started, bridged, ended:\n%s", e.logs.String())

	intruder, err := sipua.NewSoftphone("mallory", "wrong", nil)
	require.NoError(t, err)
	t.Cleanup(intruder.Close)
	_, err = intruder.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.Error(t, err)
	e.waitLogged("authentication failed", 1)
	require.Contains(t, e.logs.String(), "user=mallory")
}

// TestCallbackLogMasksCallID: on a callback leg A comes from the
// consignee's phone, and a carrier may build the Call-ID from its number:
// the call's lines carry that Call-ID with numbers masked.
func TestCallbackLogMasksCallID(t *testing.T) {
	require.Equal(t, "[number]-77@gw.example", aCallID("13800138000-77@gw.example", true))
	require.Equal(t, "13700137000-77@gw.example", aCallID("13700137000-77@gw.example", false), "a courier's own number is its CDR's caller too")
	long := strings.Repeat("a", 300)
	require.Len(t, aCallID(long, false), maxLogValue+len("…"))
}

// TestFormatNumber: how a number stored in E.164 goes on the trunk in each
// trunk.number_format.
func TestFormatNumber(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, national, e164 string }{
		"mobile":                 {"+8613800138000", "13800138000", "+8613800138000"},
		"Beijing fixed line":     {"+861062345678", "01062345678", "+861062345678"},
		"Hangzhou fixed line":    {"+8657187654321", "057187654321", "+8657187654321"},
		"three-digit area, 7":    {"+863982345678", "03982345678", "+863982345678"},
		"another country, as is": {"+14155550123", "14155550123", "+14155550123"},
	}
	for name, tc := range tests {
		require.Equal(t, tc.national, formatNumber(tc.in, config.NumberFormatNational), name)
		require.Equal(t, tc.e164, formatNumber(tc.in, config.NumberFormatE164), name)
	}
}
