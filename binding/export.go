package binding

import (
	"encoding/csv"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteCSV writes rows (the header row first) as CSV, every cell made safe
// for spreadsheets: a cell that begins with =, +, -, @, a tab or a carriage
// return is prefixed with a single quote, so that a caller named "=1+2*3"
// or "=HYPERLINK(…)" is shown as text and never evaluated as a formula
// (OWASP, CSV Injection). Every CSV vnum writes goes through it.
func WriteCSV(w io.Writer, rows [][]string) error {
	cw := csv.NewWriter(w)
	cells := []string{}
	for _, row := range rows {
		cells = cells[:0]
		for _, cell := range row {
			cells = append(cells, csvSafe(cell))
		}
		if err := cw.Write(cells); err != nil {
			return fmt.Errorf("csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	return nil
}

// csvSafe neutralises a cell a spreadsheet would read as a formula.
func csvSafe(cell string) string {
	if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
		return "'" + cell
	}
	return cell
}

// ParseTime reads a time bound of a CDR query: RFC 3339
// ("2026-11-01T00:00:00Z"), or a date ("2026-11-01") or a date and minute
// ("2026-11-01T08:30", "2026-11-01 08:30") in loc, the billing time zone.
// The empty string is the zero time (unbounded). Anything else is
// ErrInvalid.
func ParseTime(v string, loc *time.Location) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w time %q: want RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)", ErrInvalid, v)
}
