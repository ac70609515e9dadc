package binding

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// hookSecret is the test merchants' webhook secret.
const hookSecret = "0123456789abcdef-secret"

// withHook registers a webhook for merchant.
func withHook(t testing.TB, s *Store, merchant string) {
	t.Helper()
	_, err := s.SetWebhook(context.Background(), merchant, "https://hooks.example.com/vnum", hookSecret)
	require.NoError(t, err)
}

// listAll returns every event of merchant, oldest first.
func listAll(t testing.TB, s *Store, merchant string) []Event {
	t.Helper()
	es, err := s.ListEvents(context.Background(), EventFilter{Merchant: merchant, Limit: MaxEventLimit})
	require.NoError(t, err)
	for i, j := 0, len(es)-1; i < j; i, j = i+1, j-1 {
		es[i], es[j] = es[j], es[i]
	}
	return es
}

// types is the types of es, in order.
func types(es []Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Type
	}
	return out
}

// requireNoConsignee checks that no event of es, as listed or as sent,
// holds the consignee's number in any form.
func requireNoConsignee(t *testing.T, es []Event) {
	t.Helper()
	for _, e := range es {
		body, err := e.Body()
		require.NoError(t, err)
		listed, err := json.Marshal(e)
		require.NoError(t, err)
		for _, b := range []string{"13800138000", "8613800138000"} {
			require.NotContains(t, string(body), b)
			require.NotContains(t, string(listed), b)
		}
	}
}

// TestCallEventsFollowTheRecord: the writes a call already makes write its
// events, in the same statement: call.started when it reaches a binding,
// ringing, answered, ended with the CDR as the export has it, numbered 1,
// 2, 3, 4; a refresh or a second end writes nothing; a merchant without a
// webhook gets none.
func TestCallEventsFollowTheRecord(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t, WithNode("vnum-a"))
		seed(t, s, "17000000001")
		withHook(t, s, "m1")
		ctx := context.Background()
		rates, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)
		b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)

		c := &callrec.Record{CallID: "a@x", Merchant: "m1", Host: b.Host, Direction: callrec.DirectionToConsignee,
			Caller: "alice", CallerKind: callrec.CallerAccount, StartedAt: t0.Add(time.Hour)}
		require.NoError(t, s.StartCDR(ctx, c))
		require.Empty(t, listAll(t, s, "m1"), "no event before the call reaches a binding")

		c.BindingID, c.Order, c.Extension = b.ID, b.Order, b.Extension
		require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{}))
		c.RingingAt = c.StartedAt.Add(5 * time.Second)
		c.AnsweredAt = c.StartedAt.Add(9 * time.Second)
		c.SIPStatus = 200
		c.Recorded = true
		require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{A: "dialog-a", B: "dialog-b +8613800138000"}))
		require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{}), "an update that changes nothing new")
		require.NoError(t, s.RefreshCDR(ctx, c, c.AnsweredAt.Add(10*time.Second), rates))
		c.EndedAt, c.HangupBy = c.AnsweredAt.Add(70*time.Second), callrec.HangupCaller
		require.NoError(t, s.FinishCDR(ctx, c, rates))
		require.ErrorIs(t, s.FinishCDR(ctx, c, rates), ErrCDRFinished)

		es := listAll(t, s, "m1")
		require.Equal(t, []string{EventCallStarted, EventCallRinging, EventCallAnswered, EventCallEnded}, types(es))
		for i, e := range es {
			require.Equal(t, i+1, e.Sequence)
			require.Equal(t, c.ID, e.CallID)
			require.Equal(t, "m1", e.Merchant)
			require.Equal(t, EventPending, e.Status)
			require.Regexp(t, `^ev_[0-9a-f]{32}$`, e.ID)
		}
		require.Equal(t, []time.Time{c.StartedAt, c.RingingAt, c.AnsweredAt, c.EndedAt},
			[]time.Time{es[0].CreatedAt, es[1].CreatedAt, es[2].CreatedAt, es[3].CreatedAt})
		got, err := s.GetCDR(ctx, c.ID)
		require.NoError(t, err)
		require.JSONEq(t, string(got.AppendJSON(nil)), string(es[3].Data), "call.ended carries the CDR as exported")
		require.JSONEq(t, `{"binding":"`+b.ID+`","order":"o-1","host":"`+b.Host+`","extension":"`+b.Extension+
			`","direction":"to_consignee","caller":"alice","started_at":"2026-11-01T09:00:00Z"}`, string(es[0].Data))
		require.JSONEq(t, `{"binding":"`+b.ID+`","order":"o-1","ringing_at":"2026-11-01T09:00:05Z"}`, string(es[1].Data))
		require.JSONEq(t, `{"binding":"`+b.ID+`","order":"o-1","answered_at":"2026-11-01T09:00:09Z"}`, string(es[2].Data))
		body, err := es[3].Body()
		require.NoError(t, err)
		var sent map[string]any
		require.NoError(t, json.Unmarshal(body, &sent))
		require.Equal(t, map[string]any{"id": es[3].ID, "type": "call.ended", "created_at": "2026-11-01T09:01:19Z",
			"merchant": "m1", "call_id": c.ID, "sequence": 4.0, "data": sent["data"]}, sent)
		// Of a recording, the merchant learns only that there is one.
		require.Equal(t, true, sent["data"].(map[string]any)["recorded"])
		require.NotContains(t, string(body), ".wav")
		requireNoConsignee(t, es)

		// Another merchant's call, without a webhook: no event.
		require.NoError(t, s.AddNumbers(ctx, "17000000002"))
		b2, err := s.CreateBinding(ctx, CreateRequest{Merchant: "m2", Order: "o-9", Consignee: "13800138000",
			OrderStatus: "shipped"}, t0)
		require.NoError(t, err)
		c2 := &callrec.Record{CallID: "b@x", Merchant: "m2", BindingID: b2.ID, Host: b2.Host, StartedAt: t0}
		require.NoError(t, s.StartCDR(ctx, c2))
		c2.EndedAt = t0.Add(time.Minute)
		require.NoError(t, s.FinishCDR(ctx, c2, rates))
		require.Empty(t, listAll(t, s, "m2"))
	})
}

// TestCallEventsOfATrunkCall: a call from the PSTN has no merchant when it
// starts; its events begin with the write that resolves the binding.
// A refusal of the protection rules is call.refused with the reason, then
// call.ended; a crash's interrupted row ends with call.ended too.
func TestCallEventsOfATrunkCall(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, dsn := be.open(t, WithNode("vnum-a"))
		seed(t, s, "17000000001")
		withHook(t, s, "m1")
		ctx := context.Background()
		rates, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)

		refused := &callrec.Record{CallID: "p@x", Host: "17000000001", Caller: "+8613900139000",
			CallerKind: callrec.CallerNumber, StartedAt: t0}
		require.NoError(t, s.StartCDR(ctx, refused))
		refused.Merchant, refused.BindingID, refused.Order = "m1", "b_1", "o-1"
		refused.EndedAt, refused.Disposition = t0.Add(3*time.Second), "quiet_hours"
		require.NoError(t, s.FinishCDR(ctx, refused, rates), "resolved and refused in one write")

		cut := &callrec.Record{CallID: "q@x", Host: "17000000001", StartedAt: t0.Add(time.Minute)}
		require.NoError(t, s.StartCDR(ctx, cut))
		cut.Merchant, cut.BindingID, cut.Order = "m1", "b_1", "o-1"
		require.NoError(t, s.UpdateCDR(ctx, cut, callrec.Legs{}))

		es := listAll(t, s, "m1")
		require.Equal(t, []string{EventCallStarted, EventCallRefused, EventCallEnded, EventCallStarted}, types(es))
		require.Equal(t, []int{1, 2, 3, 1}, []int{es[0].Sequence, es[1].Sequence, es[2].Sequence, es[3].Sequence})
		require.JSONEq(t, `{"binding":"b_1","order":"o-1","reason":"quiet_hours"}`, string(es[1].Data))

		require.NoError(t, s.Close())
		s2, err := Open(ctx, be.driver, dsn, WithNode("vnum-a"))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s2.Close()) })
		lease, err := s2.TakeLease(ctx, Holder{Host: "h", PID: 2}, LeaseOptions{})
		require.NoError(t, err)
		_, err = lease.RecoverInterrupted(ctx)
		require.NoError(t, err)
		es = listAll(t, s2, "m1")
		require.Equal(t, EventCallEnded, es[4].Type)
		require.Equal(t, 2, es[4].Sequence)
		require.Contains(t, string(es[4].Data), `"disposition":"interrupted"`)
	})
}

// TestRecordEvent: an event of a change outside the store is written only
// for a merchant with a webhook; one of a call follows the call's events;
// bad input is one clear error and writes nothing.
func TestRecordEvent(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		withHook(t, s, "m1")
		ctx := context.Background()

		ok, err := s.RecordEvent(ctx, NewEvent{Type: EventCallRefused, Merchant: "m2", Data: map[string]string{"reason": "max_active"}})
		require.NoError(t, err)
		require.False(t, ok, "m2 has no webhook")
		ok, err = s.RecordEvent(ctx, NewEvent{Type: EventCallRefused, Merchant: "m1", At: t0,
			Data: map[string]string{"reason": "max_active"}})
		require.NoError(t, err)
		require.True(t, ok)

		c := &callrec.Record{CallID: "a@x", Merchant: "m1", BindingID: "b_1", Host: "17000000001", StartedAt: t0}
		require.NoError(t, s.StartCDR(ctx, c))
		ok, err = s.RecordEvent(ctx, Blocked{Block: "k_1", Binding: "b_1", Order: "o1", By: "consignee"}.
			Event("m1", c.ID, t0.Add(time.Second)))
		require.NoError(t, err)
		require.True(t, ok)
		c.EndedAt = t0.Add(2 * time.Second)
		rates, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)
		require.NoError(t, s.FinishCDR(ctx, c, rates))

		es := listAll(t, s, "m1")
		require.Equal(t, []string{EventCallRefused, EventCallStarted, EventConsigneeBlocked, EventCallEnded}, types(es))
		require.Equal(t, []int{1, 1, 2, 3}, []int{es[0].Sequence, es[1].Sequence, es[2].Sequence, es[3].Sequence})
		require.Equal(t, "", es[0].CallID)
		require.JSONEq(t, `{"reason":"max_active"}`, string(es[0].Data))
		body, err := es[0].Body()
		require.NoError(t, err)
		require.NotContains(t, string(body), "call_id", "an event of no call has no call_id")
		require.JSONEq(t, `{"block":"k_1","binding":"b_1","order":"o1","caller":"","by":"consignee"}`, string(es[2].Data))

		for name, e := range map[string]NewEvent{
			"type":     {Type: "call.exploded", Merchant: "m1"},
			"merchant": {Type: EventCallRefused},
			"data":     {Type: EventCallRefused, Merchant: "m1", Data: []string{"x"}},
		} {
			_, err := s.RecordEvent(ctx, e)
			require.ErrorIs(t, err, ErrInvalid, name)
		}
		require.Len(t, listAll(t, s, "m1"), 4)
	})
}

// TestBindingEndedOnce: a release reports its binding's end in its own
// transaction, a renewal the old binding's; a sweep reports the bindings
// whose lifetime ran out, each once however often and from however many
// stores it runs, and not the released ones again.
func TestBindingEndedOnce(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, dsn := be.open(t)
		seed(t, s, "17000000001")
		withHook(t, s, "m1")
		ctx := context.Background()
		other, err := Open(ctx, be.driver, dsn)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, other.Close()) })

		released, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		renewed, err := s.CreateBinding(ctx, shipped("o-2"), t0)
		require.NoError(t, err)
		var expiring []*Binding
		for i := range 30 {
			req := shipped("o-x" + string(rune('a'+i)))
			req.TTL = time.Hour
			b, err := s.CreateBinding(ctx, req, t0)
			require.NoError(t, err)
			expiring = append(expiring, b)
		}
		_, err = s.CreateBinding(ctx, CreateRequest{Merchant: "m2", Order: "o-m2", Consignee: "13800138000",
			OrderStatus: "shipped", TTL: time.Hour}, t0)
		require.NoError(t, err)

		_, err = s.Release(ctx, released.ID, t0.Add(time.Minute))
		require.NoError(t, err)
		_, err = s.Renew(ctx, renewed.ID, 0, t0.Add(2*time.Minute))
		require.NoError(t, err)
		es := listAll(t, s, "m1")
		require.Equal(t, []string{EventBindingEnded, EventBindingEnded}, types(es))
		require.JSONEq(t, `{"binding":"`+released.ID+`","order":"o-1","host":"17000000001","extension":"`+
			released.Extension+`","reason":"released","ended_at":"2026-11-01T08:01:00Z"}`, string(es[0].Data))
		require.Contains(t, string(es[1].Data), renewed.ID)

		n, err := s.ReportEndedBindings(ctx, t0.Add(30*time.Minute))
		require.NoError(t, err)
		require.Zero(t, n, "nothing has expired yet, and releases are reported")

		// Two stores (two nodes) sweep at once, twice each.
		later := t0.Add(2 * time.Hour)
		done := make(chan int, 4)
		for _, st := range []*Store{s, other, s, other} {
			go func() {
				n, err := st.ReportEndedBindings(ctx, later)
				if err != nil {
					t.Error(err)
				}
				done <- n
			}()
		}
		total := 0
		for range 4 {
			total += <-done
		}
		require.Equal(t, 31, total, "30 of m1 and one of m2, each once")
		es = listAll(t, s, "m1")
		require.Len(t, es, 32)
		seen := map[string]int{}
		for _, e := range es[2:] {
			var d bindingEnd
			require.NoError(t, json.Unmarshal(e.Data, &d))
			require.Equal(t, EndExpired, d.Reason)
			require.Equal(t, "2026-11-01T09:00:00Z", d.EndedAt)
			require.Equal(t, 1, e.Sequence)
			seen[d.Binding]++
		}
		for _, b := range expiring {
			require.Equal(t, 1, seen[b.ID], b.ID)
		}
		require.Empty(t, listAll(t, s, "m2"))
		requireNoConsignee(t, es)
	})
}

// TestWebhooks: a webhook's URL and secret are checked, its secret is
// shown masked, a second registration replaces the first, and removing it
// fails the events still pending.
func TestWebhooks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s)
		ctx := context.Background()
		for name, c := range map[string][2]string{
			"scheme":   {"ftp://hooks.example.com/", hookSecret},
			"relative": {"/hooks", hookSecret},
			"no host":  {"https:///x", hookSecret},
			"userinfo": {"https://u:p@hooks.example.com/", hookSecret},
			"space":    {"https://hooks.example.com/a b", hookSecret},
			"short":    {"https://hooks.example.com/", "short-secret"},
			"control":  {"https://hooks.example.com/", "0123456789abcdef\n"},
			"long":     {"https://hooks.example.com/" + strings.Repeat("a", 3000), hookSecret},
		} {
			_, err := s.SetWebhook(ctx, "m1", c[0], c[1])
			require.ErrorIs(t, err, ErrInvalid, name)
			require.NotContains(t, err.Error(), c[1][:8], "%s: the secret is never in an error", name)
		}
		_, err := s.SetWebhook(ctx, "nosuch", "https://hooks.example.com/", hookSecret)
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.Webhook(ctx, "m1")
		require.ErrorIs(t, err, ErrNotFound)

		w, err := s.SetWebhook(ctx, "m1", "http://hooks.example.com/a", hookSecret)
		require.NoError(t, err)
		require.Equal(t, "****cret", w.MaskedSecret())
		out, err := json.Marshal(w)
		require.NoError(t, err)
		require.NotContains(t, string(out), hookSecret[:12])
		w, err = s.SetWebhook(ctx, "m1", "https://hooks.example.com/b", "another-secret-of-24-chr")
		require.NoError(t, err)
		require.Equal(t, "https://hooks.example.com/b", w.URL)
		require.Equal(t, "another-secret-of-24-chr", w.Secret)

		ok, err := s.RecordEvent(ctx, NewEvent{Type: EventCallRefused, Merchant: "m1", Data: map[string]string{"reason": "x"}})
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, s.RemoveWebhook(ctx, "m1"))
		require.ErrorIs(t, s.RemoveWebhook(ctx, "m1"), ErrNotFound)
		require.ErrorIs(t, s.RemoveWebhook(ctx, "nosuch"), ErrNotFound)
		es := listAll(t, s, "m1")
		require.Len(t, es, 1)
		require.Equal(t, EventFailed, es[0].Status)
		require.Equal(t, "webhook removed", es[0].LastError)
		ok, err = s.RecordEvent(ctx, NewEvent{Type: EventCallRefused, Merchant: "m1"})
		require.NoError(t, err)
		require.False(t, ok, "no webhook, no event")
	})
}
