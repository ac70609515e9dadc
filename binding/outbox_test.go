package binding

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// answeredCall writes the record of an answered call of merchant m1 that
// ended, and returns it: four events when m1 has a webhook.
func answeredCall(t testing.TB, s *Store, callID string, at time.Time) *callrec.Record {
	t.Helper()
	ctx := context.Background()
	c := &callrec.Record{CallID: callID, Merchant: "m1", BindingID: "b_1", Order: "o-1", Host: "17000000001",
		Extension: "1234", Direction: callrec.DirectionToConsignee, Caller: "alice", StartedAt: at}
	require.NoError(t, s.StartCDR(ctx, c))
	c.RingingAt, c.AnsweredAt = at.Add(time.Second), at.Add(2*time.Second)
	require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{}))
	c.EndedAt = at.Add(time.Minute)
	rates, err := ParseRates("0.02", "0.00018")
	require.NoError(t, err)
	require.NoError(t, s.FinishCDR(ctx, c, rates))
	return c
}

// hooked opens a store on a new database with the seed data and a
// webhook for merchant m1, and returns it with its DSN.
func hooked(t *testing.T, be backend) (*Store, string) {
	t.Helper()
	s, dsn := be.open(t)
	seed(t, s)
	withHook(t, s, "m1")
	return s, dsn
}

// claimTypes claims what is due at now and returns the claims and their
// types.
func claimTypes(t *testing.T, s *Store, now time.Time) ([]Delivery, []string) {
	t.Helper()
	ds, err := s.ClaimEvents(context.Background(), now, 10, time.Minute)
	require.NoError(t, err)
	ts := make([]string, len(ds))
	for i, d := range ds {
		ts[i] = d.Type
	}
	return ds, ts
}

// TestClaimsGoInOrder: a call's events are claimed one at a time in
// sequence order, each once its predecessor is delivered; a failed attempt
// holds the ones behind it until its next attempt, a failed event holds
// them until it is retried by hand; a claim keeps other workers off until
// it runs out.
func TestClaimsGoInOrder(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := hooked(t, be)
		ctx := context.Background()
		c1 := answeredCall(t, s, "c1@x", t0)
		c2 := answeredCall(t, s, "c2@x", t0)
		now := t0.Add(time.Hour)

		ds, ts := claimTypes(t, s, now)
		require.Equal(t, []string{EventCallStarted, EventCallStarted}, ts, "the first event of each call, no more")
		require.Equal(t, "https://hooks.example.com/vnum", ds[0].URL)
		require.Equal(t, hookSecret, ds[0].Secret)
		require.Equal(t, 1, ds[0].Attempts)
		_, ts = claimTypes(t, s, now)
		require.Empty(t, ts, "claimed events are held")

		require.NoError(t, s.EventDelivered(ctx, ds[0], now))
		require.NoError(t, s.EventAttemptFailed(ctx, ds[1], "503 Service Unavailable", now.Add(10*time.Second)))
		require.ErrorIs(t, s.EventDelivered(ctx, ds[1], now), ErrClaimLost, "its claim ended with the failure")

		ds, ts = claimTypes(t, s, now)
		require.Equal(t, []string{EventCallRinging}, ts)
		require.Equal(t, c1.ID, ds[0].CallID)
		// The claim runs out (a worker that died): another takes it, and
		// the first one's outcome is not kept.
		again, ts := claimTypes(t, s, now.Add(2*time.Minute))
		require.Equal(t, []string{EventCallRinging, EventCallStarted}, ts)
		require.Equal(t, 2, again[0].Attempts)
		require.ErrorIs(t, s.EventDelivered(ctx, ds[0], now), ErrClaimLost)
		require.NoError(t, s.EventDelivered(ctx, again[0], now.Add(2*time.Minute)))

		// Call 2's start fails for good: the rest of call 2 waits for it,
		// at any time, until it is retried by hand.
		require.NoError(t, s.EventAttemptFailed(ctx, again[1], "timeout", time.Time{}))
		ds, ts = claimTypes(t, s, now.Add(3*time.Minute))
		require.Equal(t, []string{EventCallAnswered}, ts)
		require.Equal(t, c1.ID, ds[0].CallID)
		require.NoError(t, s.EventDelivered(ctx, ds[0], now))
		ds, ts = claimTypes(t, s, now.Add(100*24*time.Hour))
		require.Equal(t, []string{EventCallEnded}, ts)
		require.NoError(t, s.EventDelivered(ctx, ds[0], now))
		_, ts = claimTypes(t, s, now.Add(100*24*time.Hour))
		require.Empty(t, ts)

		failed, err := s.ListEvents(ctx, EventFilter{Status: EventFailed})
		require.NoError(t, err)
		require.Len(t, failed, 1)
		require.Equal(t, c2.ID, failed[0].CallID)
		require.Equal(t, "timeout", failed[0].LastError)
		require.Equal(t, 2, failed[0].Attempts)
		pending, err := s.PendingEvents(ctx)
		require.NoError(t, err)
		require.Equal(t, 3, pending, "call 2's last three wait")

		retried, err := s.RetryEvent(ctx, failed[0].ID, now.Add(4*time.Minute))
		require.NoError(t, err)
		require.Equal(t, EventPending, retried.Status)
		require.Zero(t, retried.Attempts, "a retry by hand starts the schedule again")
		for _, want := range []string{EventCallStarted, EventCallRinging, EventCallAnswered, EventCallEnded} {
			ds, ts = claimTypes(t, s, now.Add(5*time.Minute))
			require.Equal(t, []string{want}, ts)
			require.NoError(t, s.EventDelivered(ctx, ds[0], now.Add(5*time.Minute)))
		}
		_, err = s.RetryEvent(ctx, failed[0].ID, now)
		require.ErrorIs(t, err, ErrEnded, "a delivered event is not sent again by hand")
		_, err = s.RetryEvent(ctx, "ev_nosuch", now)
		require.ErrorIs(t, err, ErrNotFound)

		n, err := s.PurgeDelivered(ctx, now.Add(5*time.Minute))
		require.NoError(t, err)
		require.Equal(t, 4, n, "those delivered before")
		require.Len(t, listAll(t, s, "m1"), 4)
	})
}

// TestClaimsNeverShared: workers of several stores (nodes) claiming from
// one database at once never hold the same event, and take every event.
func TestClaimsNeverShared(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, dsn := hooked(t, be)
		ctx := context.Background()
		for i := range 40 {
			_, err := s.RecordEvent(ctx, NewEvent{Type: EventCallRefused, Merchant: "m1", At: t0.Add(time.Duration(i) * time.Second),
				Data: map[string]int{"n": i}})
			require.NoError(t, err)
		}
		other, err := Open(ctx, be.driver, dsn)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, other.Close()) })

		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for _, st := range []*Store{s, other, s, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ds, err := st.ClaimEvents(ctx, t0.Add(time.Hour), 3, time.Hour)
					if err != nil {
						t.Error(err)
						return
					}
					if len(ds) == 0 {
						return
					}
					mu.Lock()
					for _, d := range ds {
						seen[d.ID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Len(t, seen, 40)
		for id, n := range seen {
			require.Equal(t, 1, n, id)
		}
	})
}

// TestOnlyTheHeadOfACallIsDue: of a call's undelivered events only the
// first is due; the others wait (nextNever) so that a claim never passes
// over them, and each delivery makes the next one due. An event written
// after all of its call's are delivered is due at once.
func TestOnlyTheHeadOfACallIsDue(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := hooked(t, be)
		ctx := context.Background()
		c := answeredCall(t, s, "c1@x", t0)
		now := t0.Add(time.Hour)
		due := func() int {
			var n int
			require.NoError(t, s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events
				WHERE status = 'pending' AND next_at <= ? AND claimed_until <= ?`, now.UnixNano(), now.UnixNano()).Scan(&n))
			return n
		}
		require.Equal(t, 1, due(), "call.started, not the three behind it")
		for _, want := range []string{EventCallStarted, EventCallRinging, EventCallAnswered, EventCallEnded} {
			ds, ts := claimTypes(t, s, now)
			require.Equal(t, []string{want}, ts)
			require.Equal(t, 0, due())
			require.NoError(t, s.EventDelivered(ctx, ds[0], now))
		}
		require.Equal(t, 0, due())
		ok, err := s.RecordEvent(ctx, Blocked{Block: "k_1", Binding: "b_1", By: "operator"}.Event("m1", c.ID, now))
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, 1, due(), "nothing of its call undelivered: due at once")
	})
}

// TestNoteOutcomesTogether: outcomes noted in one transaction each get
// their own answer: a claim that ran out is ErrClaimLost and changes
// nothing, while the others are noted (delivered, retried, failed).
func TestNoteOutcomesTogether(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := hooked(t, be)
		ctx := context.Background()
		for _, id := range []string{"c1@x", "c2@x", "c3@x", "c4@x"} {
			answeredCall(t, s, id, t0)
		}
		now := t0.Add(time.Hour)
		ds, _ := claimTypes(t, s, now)
		require.Len(t, ds, 4)
		lost := ds[3]
		lost.Claim = "cl_other"
		errs := s.NoteOutcomes(ctx, []Outcome{
			{Delivery: ds[0], At: now, Delivered: true},
			{Delivery: ds[1], Why: "HTTP 503", Next: now.Add(time.Minute)},
			{Delivery: ds[2], Why: "HTTP 500"},
			{Delivery: lost, At: now, Delivered: true},
		})
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		require.NoError(t, errs[2])
		require.ErrorIs(t, errs[3], ErrClaimLost)

		byID := map[string]Event{}
		for _, e := range listAll(t, s, "m1") {
			byID[e.ID] = e
		}
		require.Equal(t, EventDelivered, byID[ds[0].ID].Status)
		require.Equal(t, EventPending, byID[ds[1].ID].Status)
		require.Equal(t, now.Add(time.Minute), byID[ds[1].ID].NextAt)
		require.Equal(t, EventFailed, byID[ds[2].ID].Status)
		require.Equal(t, "HTTP 500", byID[ds[2].ID].LastError)
		require.Equal(t, EventPending, byID[ds[3].ID].Status, "the lost claim's outcome is not noted")
		_, ts := claimTypes(t, s, now)
		require.Equal(t, []string{EventCallRinging}, ts, "only the delivered call's next event is due")
	})
}

// TestPurgeDeliveredInBatches: the purge deletes every event delivered
// before its time however many there are, in statements of purgeBatch,
// and keeps the later ones.
func TestPurgeDeliveredInBatches(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := hooked(t, be)
		ctx := context.Background()
		const old = 2*purgeBatch + 1
		_, err := s.db.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
			INSERT INTO events (id, type, merchant, sequence, created_at, data, status, delivered_at)
			SELECT 'ev_p' || CAST(i AS TEXT), 'binding.ended', 'm1', 1, i, '{}', 'delivered', CASE WHEN i <= ? THEN CAST(i AS BIGINT) ELSE CAST(? AS BIGINT) END
			FROM n`, old+3, old, t0.UnixNano())
		require.NoError(t, err)
		n, err := s.PurgeDelivered(ctx, t0)
		require.NoError(t, err)
		require.Equal(t, old, n)
		require.Len(t, listAll(t, s, "m1"), 3, "those delivered at t0 are kept")
		n, err = s.PurgeDelivered(ctx, t0)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// TestClaimReadsInIndexOrder pins that SQLite finds the events to claim in
// the order of the index of due events, with no sort of every due event
// first ("USE TEMP B-TREE"): a claim reads only as far as what it takes,
// however many events wait, while it holds the one writer.
func TestClaimReadsInIndexOrder(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	plan := sqlitePlan(t, s, claimQuery(sqliteDialect), "cl_x", 1, 1, 1, 64)
	require.NotContains(t, plan, "TEMP B-TREE", plan)
	require.Contains(t, plan, "INDEX events_due", plan)
}
