package binding

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/internal/digits"
)

// Micros is an amount of money in micro-units (10⁻⁶ yuan): the money of
// call records (callrec.Micros), named here for rates and bills.
type Micros = callrec.Micros

// microsPerUnit is the number of micro-units in one yuan.
const microsPerUnit = callrec.MicrosPerUnit

// ParseMicros parses a non-negative decimal string such as "0.00018" or
// "12" into micro-units. More than six decimals is an error, not a rounding.
func ParseMicros(s string) (Micros, error) {
	s = strings.TrimSpace(s)
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || len(frac) > 6 || !digits.Only(whole) || (frac != "" && !digits.Only(frac)) ||
		(hasDot && frac == "") {
		return 0, fmt.Errorf("%w amount %q: want a decimal >= 0 with at most 6 decimals", ErrInvalid, s)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > (1<<63-1)/microsPerUnit-1 {
		return 0, fmt.Errorf("%w amount %q out of range", ErrInvalid, s)
	}
	f := int64(0)
	if frac != "" {
		f, err = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w amount %q", ErrInvalid, s)
		}
	}
	return Micros(w*microsPerUnit + f), nil
}

// Rates are the prices billing applies.
type Rates struct {
	// PerMinute is the price of one billed minute of talk.
	PerMinute Micros
	// RentalPerDay is the price of one binding-day.
	RentalPerDay Micros
}

// ParseRates parses billing.per_minute and billing.rental_per_day.
func ParseRates(perMinute, rentalPerDay string) (Rates, error) {
	pm, err := ParseMicros(perMinute)
	if err != nil {
		return Rates{}, fmt.Errorf("per minute: %w", err)
	}
	rd, err := ParseMicros(rentalPerDay)
	if err != nil {
		return Rates{}, fmt.Errorf("rental per day: %w", err)
	}
	return Rates{PerMinute: pm, RentalPerDay: rd}, nil
}
