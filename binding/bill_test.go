package binding

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

func TestBindingDays(t *testing.T) {
	t.Parallel()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	from, to, err := MonthRange("2026-11", shanghai)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 10, 31, 16, 0, 0, 0, time.UTC), from.UTC())
	d := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return v
	}
	tests := map[string]struct {
		created, end string
		want         int
	}{
		"one started day":         {"2026-11-05T00:00:00Z", "2026-11-05T00:00:01Z", 1},
		"exactly one day":         {"2026-11-05T00:00:00Z", "2026-11-06T00:00:00Z", 1},
		"a day and a second":      {"2026-11-05T00:00:00Z", "2026-11-06T00:00:01Z", 2},
		"thirty days in month":    {"2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 30},
		"period starts before":    {"2026-10-31T15:00:00Z", "2026-11-01T15:00:00Z", 0},
		"second period in month":  {"2026-10-31T15:00:00Z", "2026-11-01T15:00:01Z", 1},
		"starts after month":      {"2026-11-30T16:00:00Z", "2026-12-05T00:00:00Z", 0},
		"last period in month":    {"2026-11-30T15:59:59Z", "2026-12-05T00:00:00Z", 1},
		"released before created": {"2026-11-05T00:00:00Z", "2026-11-05T00:00:00Z", 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// Long after the month, every period of it has begun.
			require.Equal(t, tc.want, BindingDays(d(tc.created), d(tc.end), from, to, to.AddDate(1, 0, 0)))
		})
	}
}

func TestBill(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t, fixedClock(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)))
		seed(t, s, "17000000001")
		ctx := context.Background()
		rates, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)
		utc := time.UTC
		start := time.Date(2026, 11, 10, 0, 0, 0, 0, utc)
		req := shipped("o-1")
		req.TTL = 72 * time.Hour
		_, err = s.CreateBinding(ctx, req, start)
		require.NoError(t, err)

		c := &callrec.Record{CallID: "a", Merchant: "m1", StartedAt: start.Add(time.Hour), AnsweredAt: start.Add(time.Hour + 10*time.Second)}
		require.NoError(t, s.StartCDR(ctx, c))
		c.EndedAt = c.AnsweredAt.Add(90 * time.Second)
		require.NoError(t, s.FinishCDR(ctx, c, rates))
		u := &callrec.Record{CallID: "b", Merchant: "m1", StartedAt: start.Add(2 * time.Hour)}
		require.NoError(t, s.StartCDR(ctx, u))
		require.NoError(t, s.FinishCDR(ctx, u, rates))

		b, err := s.Bill(ctx, "m1", "2026-11", utc, rates, "CNY")
		require.NoError(t, err)
		require.Equal(t, Bill{Merchant: "m1", Month: "2026-11", Currency: "CNY", BindingDays: 3,
			Rental: 540, Calls: 1, Minutes: 2, CallFee: 40000, Total: 40540}, b)
		require.Equal(t, "0.00054", b.Rental.String())
		require.Equal(t, "0.00540", (30 * rates.RentalPerDay).String(), "a 30-day binding")

		_, err = s.Bill(ctx, "m1", "November", utc, rates, "CNY")
		require.ErrorIs(t, err, ErrInvalid)
		_, err = s.Bill(ctx, "m9", "2026-11", utc, rates, "CNY")
		require.ErrorIs(t, err, ErrNotFound)
	})
}

// clock is a store clock a test moves.
type clock struct{ at atomic.Int64 }

func newClock(at time.Time) *clock {
	c := &clock{}
	c.set(at)
	return c
}

func (c *clock) set(at time.Time)    { c.at.Store(at.UnixNano()) }
func (c *clock) now() time.Time      { return time.Unix(0, c.at.Load()).UTC() }
func (c *clock) option() Option      { return WithClock(c.now) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// TestBillCountsBegunDays writes down README "CDRs and billing"'s rental rule as of a clock:
// only the binding-days that have begun count, each in the month
// (Asia/Shanghai) in which it starts.
func TestBillCountsBegunDays(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		at := func(year int, month time.Month, day, hour, minute int) time.Time {
			return time.Date(year, month, day, hour, minute, 0, 0, shanghai(t))
		}
		type step struct {
			created time.Time
			ttl     time.Duration
			// release, when not zero, is how long after creation it is released.
			release time.Duration
		}
		tests := map[string]struct {
			binding step
			now     time.Time
			want    map[string]int
		}{
			"created a minute ago": {
				binding: step{created: at(2026, 11, 10, 9, 0)},
				now:     at(2026, 11, 10, 9, 1),
				want:    map[string]int{"2026-11": 1, "2026-12": 0},
			},
			"created at this very instant": {
				binding: step{created: at(2026, 11, 10, 9, 0)},
				now:     at(2026, 11, 10, 9, 0),
				want:    map[string]int{"2026-11": 1},
			},
			"created in the previous month": {
				binding: step{created: at(2026, 10, 31, 12, 0)},
				now:     at(2026, 11, 2, 13, 0),
				want:    map[string]int{"2026-10": 1, "2026-11": 2, "2026-12": 0},
			},
			"a 31-day month": {
				binding: step{created: at(2027, 1, 1, 0, 0), ttl: 60 * 24 * time.Hour},
				now:     at(2027, 2, 1, 0, 30),
				want:    map[string]int{"2027-01": 31, "2027-02": 1},
			},
			"a 30-day month": {
				binding: step{created: at(2027, 4, 1, 0, 0), ttl: 60 * 24 * time.Hour},
				now:     at(2027, 5, 15, 0, 0),
				want:    map[string]int{"2027-04": 30, "2027-05": 15},
			},
			"a 28-day February": {
				binding: step{created: at(2027, 2, 1, 0, 0), ttl: 60 * 24 * time.Hour},
				now:     at(2027, 6, 1, 0, 0),
				want:    map[string]int{"2027-02": 28, "2027-03": 31, "2027-04": 1},
			},
			"a leap day": {
				binding: step{created: at(2028, 2, 28, 12, 0), ttl: 72 * time.Hour},
				now:     at(2028, 3, 10, 0, 0),
				want:    map[string]int{"2028-02": 2, "2028-03": 1},
			},
			"the last day of the ttl": {
				binding: step{created: at(2026, 11, 10, 9, 0), ttl: 72 * time.Hour},
				now:     at(2026, 11, 13, 8, 59),
				want:    map[string]int{"2026-11": 3},
			},
			"after the ttl ended": {
				binding: step{created: at(2026, 11, 10, 9, 0), ttl: 72 * time.Hour},
				now:     at(2026, 11, 20, 0, 0),
				want:    map[string]int{"2026-11": 3},
			},
			"released mid-period": {
				binding: step{created: at(2026, 11, 10, 9, 0), release: 30 * time.Hour},
				now:     at(2026, 11, 25, 0, 0),
				want:    map[string]int{"2026-11": 2},
			},
			"released as a period begins": {
				binding: step{created: at(2026, 11, 10, 9, 0), release: 24 * time.Hour},
				now:     at(2026, 11, 25, 0, 0),
				want:    map[string]int{"2026-11": 2},
			},
			"a future month": {
				binding: step{created: at(2026, 11, 10, 9, 0)},
				now:     at(2026, 11, 20, 12, 0),
				want:    map[string]int{"2026-11": 11, "2026-12": 0, "2027-01": 0},
			},
		}
		rates, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				clk := newClock(tc.binding.created)
				s, _ := be.open(t, clk.option())
				seed(t, s, "17000000001")
				req := shipped("o")
				req.TTL = tc.binding.ttl
				b, err := s.CreateBinding(ctx, req, clk.now())
				require.NoError(t, err)
				if tc.binding.release > 0 {
					clk.add(tc.binding.release)
					_, err := s.Release(ctx, b.ID, clk.now())
					require.NoError(t, err)
				}
				clk.set(tc.now)
				for month, days := range tc.want {
					bill, err := s.Bill(ctx, "m1", month, shanghai(t), rates, "CNY")
					require.NoError(t, err)
					require.Equal(t, days, bill.BindingDays, month)
					require.Equal(t, Micros(days)*rates.RentalPerDay, bill.Rental, month)
				}
			})
		}
	})
}

// TestBillNeverShrinks moves the clock hour by hour through a binding's
// life, releasing it the instant a period begins, and checks that no
// month's bill ever goes down and that the running month's grows.
func TestBillNeverShrinks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		created := time.Date(2026, 11, 28, 9, 0, 0, 0, shanghai(t))
		clk := newClock(created)
		s, _ := be.open(t, clk.option())
		seed(t, s, "17000000001")
		rates, err := ParseRates("0.02", "0.00018")
		require.NoError(t, err)
		b, err := s.CreateBinding(ctx, shipped("o"), clk.now())
		require.NoError(t, err)
		months := []string{"2026-11", "2026-12", "2027-01"}
		last := map[string]int{}
		total := 0
		for h := 0; h <= 24*40; h++ {
			clk.set(created.Add(time.Duration(h) * time.Hour))
			if h == 24*5 {
				_, err := s.Release(ctx, b.ID, clk.now())
				require.NoError(t, err)
			}
			sum := 0
			for _, m := range months {
				bill, err := s.Bill(ctx, "m1", m, shanghai(t), rates, "CNY")
				require.NoError(t, err)
				require.GreaterOrEqual(t, bill.BindingDays, last[m], "%s at +%dh", m, h)
				last[m] = bill.BindingDays
				sum += bill.BindingDays
			}
			if h < 24*5 {
				require.Equal(t, h/24+1, sum, "+%dh: one day per begun period", h)
			}
			total = sum
		}
		require.Equal(t, 6, total, "five whole days and the period begun at the release")
		require.Equal(t, map[string]int{"2026-11": 3, "2026-12": 3, "2027-01": 0}, last)
	})
}
