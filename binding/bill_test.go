package binding

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBindingDays(t *testing.T) {
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
			require.Equal(t, tc.want, BindingDays(d(tc.created), d(tc.end), from, to))
		})
	}
}

func TestBill(t *testing.T) {
	s, _ := openTest(t)
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

	c := &CDR{CallID: "a", Merchant: "m1", StartedAt: start.Add(time.Hour), AnsweredAt: start.Add(time.Hour + 10*time.Second)}
	require.NoError(t, s.StartCDR(ctx, c))
	c.EndedAt = c.AnsweredAt.Add(90 * time.Second)
	require.NoError(t, s.FinishCDR(ctx, c, rates))
	u := &CDR{CallID: "b", Merchant: "m1", StartedAt: start.Add(2 * time.Hour)}
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
}
