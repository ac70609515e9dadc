package binding

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

func TestRate(t *testing.T) {
	t.Parallel()
	perMinute := Micros(20000)
	tests := map[string]struct {
		talk          time.Duration
		seconds, mins int
		fee           string
	}{
		"never answered": {0, 0, 0, "0.00000"},
		"one ms":         {time.Millisecond, 1, 1, "0.02000"},
		"1 s":            {time.Second, 1, 1, "0.02000"},
		"59 s":           {59 * time.Second, 59, 1, "0.02000"},
		"60 s":           {60 * time.Second, 60, 1, "0.02000"},
		"60.9 s":         {60*time.Second + 900*time.Millisecond, 60, 1, "0.02000"},
		"61 s":           {61 * time.Second, 61, 2, "0.04000"},
		"120 s":          {120 * time.Second, 120, 2, "0.04000"},
		"negative":       {-time.Second, 0, 0, "0.00000"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, m, fee := Rate(tc.talk, perMinute)
			require.Equal(t, tc.seconds, s)
			require.Equal(t, tc.mins, m)
			require.Equal(t, tc.fee, fee.String())
		})
	}
}

func TestCDRLifecycle(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s)
		ctx := context.Background()
		rates := Rates{PerMinute: 20000}
		c := &callrec.Record{CallID: "call-1@a", Host: "17000000001", Direction: callrec.DirectionToConsignee, Caller: "alice",
			StartedAt: t0}
		require.NoError(t, s.StartCDR(ctx, c))
		require.Regexp(t, `^c_[0-9a-f]{16}$`, c.ID)

		c.Merchant, c.BindingID, c.Order, c.Extension = "m1", "b_1", "o-1", "1234"
		c.RingingAt = t0.Add(5 * time.Second)
		c.AnsweredAt = t0.Add(9 * time.Second)
		c.Recorded = true // its recording begun at the bridge
		require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{}))

		c.EndedAt = c.AnsweredAt.Add(61*time.Second + 500*time.Millisecond)
		c.HangupBy, c.SIPStatus = callrec.HangupCallee, 200
		require.NoError(t, s.FinishCDR(ctx, c, rates))
		require.Equal(t, 61, c.TalkSeconds)
		require.Equal(t, 2, c.BilledMinutes)
		require.Equal(t, Micros(40000), c.Fee)
		require.Equal(t, callrec.DispositionAnswered, c.Disposition)
		require.ErrorIs(t, s.FinishCDR(ctx, c, rates), ErrCDRFinished)

		got, err := s.GetCDR(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, *c, got)

		// An unanswered call costs nothing.
		u := &callrec.Record{CallID: "call-2@a", Merchant: "m1", StartedAt: t0.Add(time.Hour)}
		require.NoError(t, s.StartCDR(ctx, u))
		u.Disposition = callrec.DispositionBusy
		u.EndedAt = t0.Add(time.Hour + 10*time.Second)
		require.NoError(t, s.FinishCDR(ctx, u, rates))
		require.Zero(t, u.TalkSeconds)
		require.Zero(t, u.Fee)

		other := &callrec.Record{CallID: "call-3@a", Merchant: "m2", StartedAt: t0.Add(2 * time.Hour)}
		require.NoError(t, s.StartCDR(ctx, other))

		all, err := s.ListCDRs(ctx, "", time.Time{}, time.Time{})
		require.NoError(t, err)
		require.Len(t, all, 3)
		mine, err := s.ListCDRs(ctx, "m1", time.Time{}, time.Time{})
		require.NoError(t, err)
		require.Len(t, mine, 2)
		window, err := s.ListCDRs(ctx, "m1", t0.Add(time.Minute), t0.Add(2*time.Hour))
		require.NoError(t, err)
		require.Len(t, window, 1)
		require.Equal(t, u.ID, window[0].ID)

		require.ErrorIs(t, s.UpdateCDR(ctx, &callrec.Record{ID: "c_nope"}, callrec.Legs{}), ErrNotFound)
		require.ErrorIs(t, s.FinishCDR(ctx, &callrec.Record{ID: "c_nope"}, rates), ErrNotFound)
		require.ErrorIs(t, s.StartCDR(ctx, &callrec.Record{ID: c.ID}), ErrExists)

		raw, err := json.Marshal(got)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		require.Equal(t, "0.04000", m["fee"])
		require.Equal(t, "2026-11-01T08:00:00Z", m["started_at"])
		require.Equal(t, "b_1", m["binding"])
		require.Equal(t, true, m["recorded"])
		raw, err = json.Marshal(other)
		require.NoError(t, err)
		require.Contains(t, string(raw), `"ended_at":null`)
		require.Contains(t, string(raw), `"recorded":false`)
	})
}

func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, dsn := be.open(t, WithNode("vnum-a"))
		ctx := context.Background()
		c := &callrec.Record{CallID: "crash@a", Merchant: "m1", StartedAt: t0, AnsweredAt: t0.Add(time.Second), Recorded: true}
		require.NoError(t, s.StartCDR(ctx, c))
		require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{}))
		require.NoError(t, s.Close())

		// The CLI opens the store while a server runs: it leaves rows alone.
		cli, err := Open(ctx, be.driver, dsn)
		require.NoError(t, err)
		got, err := cli.GetCDR(ctx, c.ID)
		require.NoError(t, err)
		require.True(t, got.EndedAt.IsZero())
		require.NoError(t, cli.Close())

		// The next server start takes the node's lease and closes it as
		// interrupted.
		s2, err := Open(ctx, be.driver, dsn, WithNode("vnum-a"))
		require.NoError(t, err)
		defer func() { require.NoError(t, s2.Close()) }()
		got, err = s2.GetCDR(ctx, c.ID)
		require.NoError(t, err)
		require.True(t, got.EndedAt.IsZero(), "opening the store closes nothing")
		lease, err := s2.TakeLease(ctx, Holder{Host: "h", PID: 2}, LeaseOptions{})
		require.NoError(t, err)
		rec, err := lease.RecoverInterrupted(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, rec.Closed)
		got, err = s2.GetCDR(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, callrec.DispositionInterrupted, got.Disposition)
		require.Equal(t, callrec.HangupSystem, got.HangupBy)
		require.False(t, got.EndedAt.IsZero())
		require.Zero(t, got.Fee)
		require.True(t, got.Recorded, "a call a crash cut keeps its recording")
	})
}

// TestListsOfUnknownMerchant pins README "The same by HTTP" at the store: a query naming a
// merchant that does not exist is ErrNotFound, not an empty list.
func TestListsOfUnknownMerchant(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s)
		ctx := context.Background()
		_, err := s.ListCDRs(ctx, "nosuch", time.Time{}, time.Time{})
		require.ErrorIs(t, err, ErrNotFound)
		require.ErrorContains(t, err, "merchant nosuch")
		_, err = s.ListBindings(ctx, "nosuch", "")
		require.ErrorIs(t, err, ErrNotFound)
		cs, err := s.ListCDRs(ctx, "m1", time.Time{}, time.Time{})
		require.NoError(t, err)
		require.Empty(t, cs, "a merchant without calls has an empty list")
		bs, err := s.ListBindings(ctx, "", "")
		require.NoError(t, err)
		require.Empty(t, bs)
	})
}

// TestCrashKeepsTalkTime pins README "CDRs and billing" for a crash: the next start closes
// an open row at the last time the call was known to be up, and an
// answered call keeps, and is billed for, the talk time known then.
func TestCrashKeepsTalkTime(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		rates := Rates{PerMinute: 20000}
		answered := t0.Add(8 * time.Second)
		tests := map[string]struct {
			cdr      callrec.Record
			refresh  []time.Duration // after the answer
			ended    time.Time
			talk     int
			minutes  int
			fee      Micros
			finished bool
		}{
			"refreshed every 10 s": {
				cdr:     callrec.Record{RingingAt: t0.Add(2 * time.Second), AnsweredAt: answered},
				refresh: []time.Duration{10 * time.Second, 20 * time.Second, 30*time.Second + 400*time.Millisecond},
				ended:   answered.Add(30*time.Second + 400*time.Millisecond), talk: 30, minutes: 1, fee: 20000,
			},
			"over a minute": {
				cdr:     callrec.Record{AnsweredAt: answered},
				refresh: []time.Duration{61 * time.Second},
				ended:   answered.Add(61 * time.Second), talk: 61, minutes: 2, fee: 40000,
			},
			"answered, never refreshed": {
				cdr:   callrec.Record{RingingAt: t0.Add(2 * time.Second), AnsweredAt: answered},
				ended: answered,
			},
			"ringing": {
				cdr:   callrec.Record{RingingAt: t0.Add(2 * time.Second)},
				ended: t0.Add(2 * time.Second),
			},
			"in the IVR": {
				cdr:   callrec.Record{},
				ended: t0,
			},
			"finished before the crash": {
				cdr:     callrec.Record{AnsweredAt: answered, EndedAt: answered.Add(5 * time.Second)},
				refresh: []time.Duration{10 * time.Second},
				ended:   answered.Add(5 * time.Second), talk: 5, minutes: 1, fee: 20000, finished: true,
			},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				restart := t0.Add(time.Hour)
				s, dsn := be.open(t, fixedClock(restart))
				seed(t, s)
				c := tc.cdr
				c.CallID, c.Merchant, c.StartedAt = "crash@a", "m1", t0
				ended := c.EndedAt
				c.EndedAt = time.Time{}
				require.NoError(t, s.StartCDR(ctx, &c))
				require.NoError(t, s.UpdateCDR(ctx, &c, callrec.Legs{}))
				if tc.finished {
					c.EndedAt = ended
					require.NoError(t, s.FinishCDR(ctx, &c, rates))
				}
				for _, d := range tc.refresh {
					err := s.RefreshCDR(ctx, &c, c.AnsweredAt.Add(d), rates)
					if tc.finished {
						require.ErrorIs(t, err, ErrCDRFinished, "a refresh after the end changes nothing")
						continue
					}
					require.NoError(t, err)
					// The open row shows the talk time so far.
					got, err := s.GetCDR(ctx, c.ID)
					require.NoError(t, err)
					require.True(t, got.EndedAt.IsZero())
					require.Equal(t, int(d/time.Second), got.TalkSeconds)
				}

				// kill -9: nothing more is written; the next start recovers.
				require.NoError(t, s.Close())
				s2 := restartNode(t, be, dsn, fixedClock(restart))
				got, err := s2.GetCDR(ctx, c.ID)
				require.NoError(t, err)
				require.Equal(t, tc.ended, got.EndedAt, "ended_at is the last time known alive, not the restart")
				require.Equal(t, tc.talk, got.TalkSeconds)
				require.Equal(t, tc.minutes, got.BilledMinutes)
				require.Equal(t, tc.fee, got.Fee)
				if tc.finished {
					require.Equal(t, callrec.DispositionAnswered, got.Disposition)
					return
				}
				require.Equal(t, callrec.DispositionInterrupted, got.Disposition)
				require.Equal(t, callrec.HangupSystem, got.HangupBy)

				// The bill counts the interrupted call like any other.
				b, err := s2.Bill(ctx, "m1", t0.Format("2006-01"), time.UTC, rates, "CNY")
				require.NoError(t, err)
				require.Equal(t, tc.fee, b.CallFee)
				require.Equal(t, tc.minutes, b.Minutes)
			})
		}

		s, _ := be.open(t)
		seed(t, s)
		c := &callrec.Record{CallID: "x", Merchant: "m1", StartedAt: t0}
		require.NoError(t, s.StartCDR(ctx, c))
		require.ErrorIs(t, s.RefreshCDR(ctx, c, t0.Add(time.Minute), rates), ErrInvalid, "not answered")
		require.ErrorIs(t, s.RefreshCDR(ctx, &callrec.Record{ID: "c_nope", AnsweredAt: t0}, t0.Add(time.Minute), rates), ErrNotFound)
	})
}

// TestRecoverOnlyOwnNode: with several nodes on one store, a node that
// starts again closes as interrupted its own open rows (and rows from
// before nodes were recorded), never another node's calls in progress.
func TestRecoverOnlyOwnNode(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		at := time.Date(2026, 11, 15, 9, 0, 0, 0, time.UTC)
		legacy, dsn := be.open(t)
		seed(t, legacy)
		open := map[string]string{} // node → its open row
		for _, node := range []string{"", "vnum-a", "vnum-b"} {
			s, err := Open(ctx, be.driver, dsn, WithNode(node))
			require.NoError(t, err)
			c := &callrec.Record{CallID: "call-" + node, Host: "17000000001", Direction: callrec.DirectionToConsignee,
				Caller: "alice", StartedAt: at}
			require.NoError(t, s.StartCDR(ctx, c))
			require.Equal(t, node, c.Node, "a row carries the node that started it")
			open[node] = c.ID
			require.NoError(t, s.Close())
		}

		a, err := Open(ctx, be.driver, dsn, WithNode("vnum-a")) // vnum-a restarts
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, a.Close()) })
		lease, err := a.TakeLease(ctx, Holder{Host: "a", PID: 1}, LeaseOptions{})
		require.NoError(t, err)
		rec, err := lease.RecoverInterrupted(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 2, rec.Closed, "its own row and the one from before nodes")
		for node, id := range open {
			got, err := a.GetCDR(ctx, id)
			require.NoError(t, err)
			require.Equal(t, node, got.Node)
			if node == "vnum-b" {
				require.True(t, got.EndedAt.IsZero(), "vnum-b's call goes on")
				continue
			}
			require.Equal(t, callrec.DispositionInterrupted, got.Disposition, "node %q", node)
			require.False(t, got.EndedAt.IsZero())
		}
	})
}

// restartNode opens the store on dsn as node vnum-a starting again: it
// takes the node's lease and closes the rows a crash left open.
func restartNode(t *testing.T, be backend, dsn string, opts ...Option) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, be.driver, dsn, append(opts, WithNode("vnum-a"))...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	lease, err := s.TakeLease(ctx, Holder{Host: "h", PID: 1}, LeaseOptions{})
	require.NoError(t, err)
	_, err = lease.RecoverInterrupted(ctx)
	require.NoError(t, err)
	return s
}
