package binding

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// shanghai is the default billing time zone.
func shanghai(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	return loc
}

// sh returns a wall-clock time in Shanghai.
func sh(t *testing.T, month time.Month, day, hour, minute int) time.Time {
	t.Helper()
	return time.Date(2026, month, day, hour, minute, 0, 0, shanghai(t))
}

// TestBillCallRounding writes down the per-call rule through the whole
// path (FinishCDR, then Bill): talk time from B's answer, rounded up once
// to the whole minute, unanswered calls free.
func TestBillCallRounding(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		rates, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)
		tests := map[string]struct {
			talk     time.Duration
			answered bool
			calls    int
			minutes  int
			fee      string
		}{
			"0 s":                 {talk: 0, answered: true, calls: 0, minutes: 0, fee: "0.00000"},
			"1 s":                 {talk: time.Second, answered: true, calls: 1, minutes: 1, fee: "0.02000"},
			"59 s":                {talk: 59 * time.Second, answered: true, calls: 1, minutes: 1, fee: "0.02000"},
			"60 s":                {talk: 60 * time.Second, answered: true, calls: 1, minutes: 1, fee: "0.02000"},
			"61 s":                {talk: 61 * time.Second, answered: true, calls: 1, minutes: 2, fee: "0.04000"},
			"unanswered, 5 min":   {talk: 5 * time.Minute, answered: false, calls: 0, minutes: 0, fee: "0.00000"},
			"IVR time not billed": {talk: 30 * time.Second, answered: true, calls: 1, minutes: 1, fee: "0.02000"},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				s, _ := be.open(t)
				seed(t, s)
				ctx := context.Background()
				// The call arrives, spends 40 s in the IVR and ringing, then
				// talks (or never gets an answer).
				started := sh(t, time.November, 10, 9, 0)
				c := &callrec.Record{CallID: "c", Merchant: "m1", StartedAt: started}
				require.NoError(t, s.StartCDR(ctx, c))
				answered := started.Add(40 * time.Second)
				c.EndedAt = answered.Add(tc.talk)
				if tc.answered {
					c.AnsweredAt = answered
				} else {
					c.Disposition = callrec.DispositionNoAnswer
				}
				require.NoError(t, s.FinishCDR(ctx, c, rates))
				b, err := s.Bill(ctx, "m1", "2026-11", shanghai(t), rates, "CNY")
				require.NoError(t, err)
				require.Equal(t, tc.calls, b.Calls)
				require.Equal(t, tc.minutes, b.Minutes)
				require.Equal(t, tc.fee, b.CallFee.String())
				require.Equal(t, b.CallFee, b.Total, "no bindings, no rental")
			})
		}
	})
}

// TestBillRentalRules writes down the rental rule: each started 24-hour
// period of a binding's active life is one binding-day, in the month
// (Asia/Shanghai) in which the period starts.
func TestBillRentalRules(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		create := func(t *testing.T, s *Store, order string, at time.Time, ttl time.Duration) *Binding {
			t.Helper()
			req := shipped(order)
			req.TTL = ttl
			b, err := s.CreateBinding(ctx, req, at)
			require.NoError(t, err)
			return b
		}
		tests := map[string]struct {
			run  func(t *testing.T, s *Store)
			want map[string]int // binding-days per month, Shanghai time
		}{
			"across the month boundary in Shanghai": {
				// Created 01:00 on 1 November in Shanghai, which is still
				// 31 October in UTC: both periods are November's.
				run: func(t *testing.T, s *Store) {
					create(t, s, "o", sh(t, time.November, 1, 1, 0), 48*time.Hour)
				},
				want: map[string]int{"2026-10": 0, "2026-11": 2, "2026-12": 0},
			},
			"periods split between two months": {
				run: func(t *testing.T, s *Store) {
					create(t, s, "o", sh(t, time.October, 30, 23, 30), 72*time.Hour)
				},
				want: map[string]int{"2026-10": 2, "2026-11": 1, "2026-12": 0},
			},
			"into December": {
				run: func(t *testing.T, s *Store) {
					create(t, s, "o", sh(t, time.November, 29, 12, 0), 72*time.Hour)
				},
				want: map[string]int{"2026-10": 0, "2026-11": 2, "2026-12": 1},
			},
			"released after an hour": {
				run: func(t *testing.T, s *Store) {
					b := create(t, s, "o", sh(t, time.November, 10, 9, 0), 0)
					_, err := s.Release(ctx, b.ID, b.CreatedAt.Add(time.Hour))
					require.NoError(t, err)
				},
				want: map[string]int{"2026-10": 0, "2026-11": 1, "2026-12": 0},
			},
			"released a second into the second day": {
				run: func(t *testing.T, s *Store) {
					b := create(t, s, "o", sh(t, time.November, 10, 9, 0), 0)
					_, err := s.Release(ctx, b.ID, b.CreatedAt.Add(24*time.Hour+time.Second))
					require.NoError(t, err)
				},
				want: map[string]int{"2026-10": 0, "2026-11": 2, "2026-12": 0},
			},
			"renewed": {
				// The old binding lived 36 h (2 days), the new one 72 h (3).
				run: func(t *testing.T, s *Store) {
					b := create(t, s, "o", sh(t, time.November, 10, 9, 0), 0)
					nb, err := s.Renew(ctx, b.ID, 72*time.Hour, b.CreatedAt.Add(36*time.Hour))
					require.NoError(t, err)
					require.Equal(t, b.Order, nb.Order)
				},
				want: map[string]int{"2026-10": 0, "2026-11": 5, "2026-12": 0},
			},
			"default ttl, 30 days": {
				run: func(t *testing.T, s *Store) {
					create(t, s, "o", sh(t, time.November, 1, 0, 0), 0)
				},
				want: map[string]int{"2026-10": 0, "2026-11": 30, "2026-12": 0},
			},
		}
		rates, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				// Long after the months billed: every period has begun.
				s, _ := be.open(t, fixedClock(sh(t, time.December, 31, 23, 0).AddDate(0, 1, 0)))
				seed(t, s, "17000000001")
				tc.run(t, s)
				for month, days := range tc.want {
					b, err := s.Bill(ctx, "m1", month, shanghai(t), rates, "CNY")
					require.NoError(t, err)
					require.Equal(t, days, b.BindingDays, month)
					require.Equal(t, Micros(days)*rates.RentalPerDay, b.Rental, month)
					require.Equal(t, b.Rental, b.Total, month)
				}
			})
		}
	})
}

// TestBillRatesChanged pins what a change of billing rates in the
// configuration does: a call is rated when it ends, at the per-minute rate
// then in force, and keeps that fee; rental is priced when the bill is
// made, at the rental rate of that moment.
func TestBillRatesChanged(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t, fixedClock(sh(t, time.December, 1, 0, 0)))
		seed(t, s, "17000000001")
		ctx := context.Background()
		old, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)
		changed, err := ParseRates("0.05", "0.0003")
		require.NoError(t, err)

		req := shipped("o")
		req.TTL = 72 * time.Hour
		_, err = s.CreateBinding(ctx, req, sh(t, time.November, 3, 8, 0))
		require.NoError(t, err)
		call := func(id string, day int, talk time.Duration, r Rates) {
			start := sh(t, time.November, day, 10, 0)
			c := &callrec.Record{CallID: id, Merchant: "m1", StartedAt: start, AnsweredAt: start.Add(10 * time.Second)}
			require.NoError(t, s.StartCDR(ctx, c))
			c.EndedAt = c.AnsweredAt.Add(talk)
			require.NoError(t, s.FinishCDR(ctx, c, r))
		}
		call("before", 3, 90*time.Second, old)      // 2 min at 0.02
		call("after", 20, 150*time.Second, changed) // 3 min at 0.05

		for name, tc := range map[string]struct {
			rates              Rates
			rental, fee, total string
		}{
			"billed at the old rates": {old, "0.00054", "0.19000", "0.19054"},
			"billed at the new rates": {changed, "0.00090", "0.19000", "0.19090"},
		} {
			b, err := s.Bill(ctx, "m1", "2026-11", shanghai(t), tc.rates, "CNY")
			require.NoError(t, err, name)
			require.Equal(t, 3, b.BindingDays, name)
			require.Equal(t, 2, b.Calls, name)
			require.Equal(t, 5, b.Minutes, name)
			require.Equal(t, tc.rental, b.Rental.String(), name)
			require.Equal(t, tc.fee, b.CallFee.String(), name)
			require.Equal(t, tc.total, b.Total.String(), name)
		}
		// A rate with a sixth decimal keeps it: no rounding anywhere.
		odd, err := ParseRates("0.020001", "0.000181")
		require.NoError(t, err)
		b, err := s.Bill(ctx, "m1", "2026-11", shanghai(t), odd, "CNY")
		require.NoError(t, err)
		require.Equal(t, "0.000543", b.Rental.String())
		require.Equal(t, fmt.Sprint(int64(543+190000)), fmt.Sprint(int64(b.Total)))
	})
}
