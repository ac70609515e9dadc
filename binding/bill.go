package binding

import (
	"context"
	"fmt"
	"time"
)

// day is the rental period: each started 24 hours of a binding's active
// life is one binding-day (SPEC §7).
const day = 24 * time.Hour

// Bill is a merchant's charges for one calendar month.
type Bill struct {
	// Merchant is billed.
	Merchant string `json:"merchant"`
	// Month is "YYYY-MM" in the billing time zone.
	Month string `json:"month"`
	// Currency is the ISO 4217 code of the amounts.
	Currency string `json:"currency"`
	// BindingDays counts the rental periods that start in the month.
	BindingDays int `json:"binding_days"`
	// Rental is BindingDays at the daily rate.
	Rental Micros `json:"rental"`
	// Calls counts the answered (billed) calls started in the month.
	Calls int `json:"calls"`
	// Minutes is the sum of their billed minutes.
	Minutes int `json:"minutes"`
	// CallFee is the sum of their fees.
	CallFee Micros `json:"call_fee"`
	// Total is Rental plus CallFee.
	Total Micros `json:"total"`
}

// MonthRange returns the first instant of month ("YYYY-MM") in loc and the
// first instant of the month after.
func MonthRange(month string, loc *time.Location) (time.Time, time.Time, error) {
	start, err := time.ParseInLocation("2006-01", month, loc)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("%w month %q: want YYYY-MM", ErrInvalid, month)
	}
	return start, start.AddDate(0, 1, 0), nil
}

// BindingDays counts the 24-hour periods of the active life [created, end)
// that start within [from, to).
func BindingDays(created, end, from, to time.Time) int {
	if !end.After(created) {
		return 0
	}
	// Period k starts at created + k·24h, for k in [0, ceil(life/24h)).
	periods := ceilDiv(end.Sub(created), day)
	lo := max(0, ceilDiv(from.Sub(created), day))
	hi := min(periods, ceilDiv(to.Sub(created), day))
	return int(max(0, hi-lo))
}

// ceilDiv returns ceil(a/b) for b > 0, for negative a too.
func ceilDiv(a, b time.Duration) int64 {
	q := int64(a / b)
	if a%b > 0 {
		q++
	}
	return q
}

// Bill computes the bill of merchant for month ("YYYY-MM") in loc: rental
// for each binding-day starting in the month and the fees of the calls
// started in it.
func (s *Store) Bill(ctx context.Context, merchant, month string, loc *time.Location, rates Rates, currency string) (Bill, error) {
	from, to, err := MonthRange(month, loc)
	if err != nil {
		return Bill{}, err
	}
	if _, err := s.Merchant(ctx, merchant); err != nil {
		return Bill{}, err
	}
	b := Bill{Merchant: merchant, Month: month, Currency: currency}
	rows, err := s.db.QueryContext(ctx, `SELECT created_at, end_at FROM bindings
		WHERE merchant = ? AND created_at < ? AND end_at > ?`, merchant, to.UnixNano(), from.UnixNano())
	if err != nil {
		return Bill{}, fmt.Errorf("bill: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var created, end int64
		if err := rows.Scan(&created, &end); err != nil {
			return Bill{}, fmt.Errorf("bill: %w", err)
		}
		b.BindingDays += BindingDays(time.Unix(0, created), time.Unix(0, end), from, to)
	}
	if err := rows.Err(); err != nil {
		return Bill{}, fmt.Errorf("bill: %w", err)
	}
	var fee int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(billed_minutes), 0), COALESCE(SUM(fee), 0)
		FROM cdrs WHERE merchant = ? AND started_at >= ? AND started_at < ? AND billed_minutes > 0`,
		merchant, from.UnixNano(), to.UnixNano()).Scan(&b.Calls, &b.Minutes, &fee); err != nil {
		return Bill{}, fmt.Errorf("bill: %w", err)
	}
	b.CallFee = Micros(fee)
	b.Rental = Micros(b.BindingDays) * rates.RentalPerDay
	b.Total = b.Rental + b.CallFee
	return b, nil
}
