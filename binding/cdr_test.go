package binding

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRate(t *testing.T) {
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
	s, _ := openTest(t)
	seed(t, s)
	ctx := context.Background()
	rates := Rates{PerMinute: 20000}
	c := &CDR{CallID: "call-1@a", Host: "17000000001", Direction: DirectionToConsignee, Caller: "alice",
		StartedAt: t0}
	require.NoError(t, s.StartCDR(ctx, c))
	require.Regexp(t, `^c_[0-9a-f]{16}$`, c.ID)

	c.Merchant, c.BindingID, c.Order, c.Extension = "m1", "b_1", "o-1", "1234"
	c.RingingAt = t0.Add(5 * time.Second)
	c.AnsweredAt = t0.Add(9 * time.Second)
	require.NoError(t, s.UpdateCDR(ctx, c))

	c.EndedAt = c.AnsweredAt.Add(61*time.Second + 500*time.Millisecond)
	c.HangupBy, c.SIPStatus = HangupCallee, 200
	require.NoError(t, s.FinishCDR(ctx, c, rates))
	require.Equal(t, 61, c.TalkSeconds)
	require.Equal(t, 2, c.BilledMinutes)
	require.Equal(t, Micros(40000), c.Fee)
	require.Equal(t, DispositionAnswered, c.Disposition)
	require.ErrorIs(t, s.FinishCDR(ctx, c, rates), ErrCDRFinished)

	got, err := s.GetCDR(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, *c, got)

	// An unanswered call costs nothing.
	u := &CDR{CallID: "call-2@a", Merchant: "m1", StartedAt: t0.Add(time.Hour)}
	require.NoError(t, s.StartCDR(ctx, u))
	u.Disposition = DispositionBusy
	u.EndedAt = t0.Add(time.Hour + 10*time.Second)
	require.NoError(t, s.FinishCDR(ctx, u, rates))
	require.Zero(t, u.TalkSeconds)
	require.Zero(t, u.Fee)

	other := &CDR{CallID: "call-3@a", Merchant: "m2", StartedAt: t0.Add(2 * time.Hour)}
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

	require.ErrorIs(t, s.UpdateCDR(ctx, &CDR{ID: "c_nope"}), ErrNotFound)
	require.ErrorIs(t, s.FinishCDR(ctx, &CDR{ID: "c_nope"}, rates), ErrNotFound)
	require.ErrorIs(t, s.StartCDR(ctx, &CDR{ID: c.ID}), ErrExists)

	raw, err := json.Marshal(got)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	require.Equal(t, "0.04000", m["fee"])
	require.Equal(t, "2026-11-01T08:00:00Z", m["started_at"])
	require.Equal(t, "b_1", m["binding"])
	raw, err = json.Marshal(other)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"ended_at":null`)
}

func TestCrashRecovery(t *testing.T) {
	s, dsn := openTest(t)
	ctx := context.Background()
	c := &CDR{CallID: "crash@a", Merchant: "m1", StartedAt: t0, AnsweredAt: t0.Add(time.Second)}
	require.NoError(t, s.StartCDR(ctx, c))
	require.NoError(t, s.UpdateCDR(ctx, c))
	require.NoError(t, s.Close())

	// The CLI opens the store while a server runs: it leaves rows alone.
	cli, err := Open(ctx, DriverSQLite, dsn, WithoutRecovery())
	require.NoError(t, err)
	got, err := cli.GetCDR(ctx, c.ID)
	require.NoError(t, err)
	require.True(t, got.EndedAt.IsZero())
	require.NoError(t, cli.Close())

	// The next server start closes it as interrupted.
	s2, err := Open(ctx, DriverSQLite, dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, s2.Close()) }()
	got, err = s2.GetCDR(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, DispositionInterrupted, got.Disposition)
	require.Equal(t, HangupSystem, got.HangupBy)
	require.False(t, got.EndedAt.IsZero())
	require.Zero(t, got.Fee)
}

// TestListsOfUnknownMerchant pins SPEC §6 at the store: a query naming a
// merchant that does not exist is ErrNotFound, not an empty list.
func TestListsOfUnknownMerchant(t *testing.T) {
	s, _ := openTest(t)
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
}
