package binding

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// day is the rental period: each started 24 hours of a binding's active
// life is one binding-day (README "CDRs and billing").
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

// BindingDays counts the binding-days of the active life [created, end)
// that start within [from, to) and have begun by now (README "CDRs and billing"). Period k
// starts at created + k·24h; it exists while it starts before end, and it
// counts once its start is not after now. So a binding created a minute
// ago has one binding-day, the running month's count grows as periods
// start, and a month not yet begun counts none.
func BindingDays(created, end, from, to, now time.Time) int {
	if !end.After(created) || now.Before(created) {
		return 0
	}
	periods := ceilDiv(end.Sub(created), day)
	begun := int64(now.Sub(created)/day) + 1
	lo := max(0, ceilDiv(from.Sub(created), day))
	hi := min(periods, begun, ceilDiv(to.Sub(created), day))
	return int(max(0, hi-lo))
}

// billedEnd is the exclusive end of the life that rental counts: the
// expiry, or just after the release. A period that starts at the instant
// of a release had begun when the binding was released, so it was already
// on the bill and stays there.
func billedEnd(expires int64, released sql.NullInt64) time.Time {
	if released.Valid && released.Int64 < expires {
		return time.Unix(0, released.Int64+1)
	}
	return time.Unix(0, expires)
}

// ceilDiv returns ceil(a/b) for b > 0, for negative a too.
func ceilDiv(a, b time.Duration) int64 {
	q := int64(a / b)
	if a%b > 0 {
		q++
	}
	return q
}

// Bill computes the bill of merchant for month ("YYYY-MM") in loc, as of
// the store's clock: rental for each binding-day that starts in the month
// and has begun, and the fees of the calls started in it. A bill never
// shrinks as time passes: a release ends the periods after it, and the
// period begun at the very instant of the release still counts.
func (s *Store) Bill(ctx context.Context, merchant, month string, loc *time.Location, rates Rates, currency string) (Bill, error) {
	from, to, err := MonthRange(month, loc)
	if err != nil {
		return Bill{}, err
	}
	if _, err := s.Merchant(ctx, merchant); err != nil {
		return Bill{}, err
	}
	b := Bill{Merchant: merchant, Month: month, Currency: currency}
	now := s.Now()
	rows, err := s.db.QueryContext(ctx, `SELECT created_at, expires_at, released_at FROM bindings
		WHERE merchant = ? AND created_at < ? AND created_at <= ? AND end_at >= ?`,
		merchant, to.UnixNano(), now.UnixNano(), from.UnixNano())
	if err != nil {
		return Bill{}, fmt.Errorf("bill: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var created, expires int64
		var released sql.NullInt64
		if err := rows.Scan(&created, &expires, &released); err != nil {
			return Bill{}, fmt.Errorf("bill: %w", err)
		}
		b.BindingDays += BindingDays(time.Unix(0, created), billedEnd(expires, released), from, to, now)
	}
	if err := rows.Err(); err != nil {
		return Bill{}, fmt.Errorf("bill: %w", err)
	}
	var fee int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), CAST(COALESCE(SUM(billed_minutes), 0) AS BIGINT), CAST(COALESCE(SUM(fee), 0) AS BIGINT)
		FROM cdrs WHERE merchant = ? AND started_at >= ? AND started_at < ? AND billed_minutes > 0`,
		merchant, from.UnixNano(), to.UnixNano()).Scan(&b.Calls, &b.Minutes, &fee); err != nil {
		return Bill{}, fmt.Errorf("bill: %w", err)
	}
	b.CallFee = Micros(fee)
	b.Rental = Micros(b.BindingDays) * rates.RentalPerDay
	b.Total = b.Rental + b.CallFee
	return b, nil
}
