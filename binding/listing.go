package binding

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/vnum/vnum/callrec"
)

// MaxPageLimit is the most rows one page of a listing may ask for.
const MaxPageLimit = 10_000

// Key is a row's place in the order of a listing: its time to the
// nanosecond (a CDR's start, a binding's creation), then its ID, which
// orders the rows of one time. No two rows share a key and a row's key
// never changes, so pages that follow each other by key neither skip nor
// repeat a row, however many rows have the same time.
type Key struct {
	// At is the row's time.
	At time.Time
	// ID is the row's ID.
	ID string
}

// IsZero reports whether k is the zero Key, which is before every row.
func (k Key) IsZero() bool { return k.ID == "" && k.At.IsZero() }

// Page selects a part of a listing: the rows after After (from the first
// row when After is zero), Limit of them (all of them when Limit is 0; the
// last page may have fewer). Limit goes up to MaxPageLimit. A row written
// inside a page's range while the page is being read joins it, so that it
// is not skipped: only then does a page hold more than Limit rows.
type Page struct {
	After Key
	Limit int
}

// Rows is a listing read from the store one row at a time, in the
// listing's order, so that a listing of any length takes the memory of one
// row: call Next until it returns false, read each row with Row, then
// check Err; Close it in any case. Like database/sql's Rows, which it
// wraps, it holds a connection of the store until it is closed.
type Rows[T any] struct {
	rows *sql.Rows
	scan func(scanner) (T, error)
	what string // the listing, for errors
	row  T
	err  error
	next Key
	more bool
}

// Next moves to the next row and reports whether there is one. It
// returns false at the end and on an error (see Err).
func (r *Rows[T]) Next() bool {
	if r.err != nil || !r.rows.Next() {
		return false
	}
	row, err := r.scan(r.rows)
	if err != nil {
		r.err = fmt.Errorf("%s: %w", r.what, err)
		return false
	}
	r.row = row
	return true
}

// Row returns the row Next moved to.
func (r *Rows[T]) Row() T { return r.row }

// Err returns the error that ended the rows early, or nil when Next
// returned false at the end of the listing.
func (r *Rows[T]) Err() error {
	if r.err != nil {
		return r.err
	}
	if err := r.rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", r.what, err)
	}
	return nil
}

// Close releases the rows' connection. It may be called more than once.
func (r *Rows[T]) Close() error { return r.rows.Close() }

// NextPage returns where the next page of the listing starts (its
// Page.After) and true, or false when the page asked for was the last one
// or no page was asked for. It is known before the first row is read.
func (r *Rows[T]) NextPage() (Key, bool) { return r.next, r.more }

// CDRFilter selects call records: those of Merchant (all when empty),
// started in [From, To) (a zero bound is open).
type CDRFilter struct {
	Merchant string
	From, To time.Time
}

// CDRs opens the call records f selects, oldest first (by start, then
// ID), and the page p of them. A merchant that does not exist is
// ErrNotFound, not an empty listing; a page limit out of range is
// ErrInvalid.
func (s *Store) CDRs(ctx context.Context, f CDRFilter, p Page) (*Rows[callrec.Record], error) {
	if err := s.knownMerchant(ctx, f.Merchant); err != nil {
		return nil, err
	}
	return openRows(ctx, s.db, cdrListing(f), p, scanCDR)
}

// cdrListing is the query of the CDRs f selects.
func cdrListing(f CDRFilter) listing {
	q := listing{name: "list cdrs", table: "cdrs", cols: cdrCols, at: "started_at"}
	if f.Merchant != "" {
		q.where("merchant = ?", f.Merchant)
	}
	q.window(f.From, f.To)
	return q
}

// ListCDRs returns call records started in [from, to), oldest first, for
// one merchant or all when merchant is "". A zero from or to is unbounded.
// A merchant that does not exist is ErrNotFound, not an empty list. It
// holds them all in memory: exports read CDRs instead.
func (s *Store) ListCDRs(ctx context.Context, merchant string, from, to time.Time) ([]callrec.Record, error) {
	rows, err := s.CDRs(ctx, CDRFilter{Merchant: merchant, From: from, To: to}, Page{})
	if err != nil {
		return nil, err
	}
	return collect(rows)
}

// BindingFilter selects bindings: those of Merchant and of Order, each
// when not empty.
type BindingFilter struct {
	Merchant string
	Order    string
}

// Bindings opens the bindings f selects, oldest first (by creation, then
// ID), and the page p of them. Their status is as of the store's clock
// when the listing opens. A merchant that does not exist is ErrNotFound,
// not an empty listing: a typo must not look like a merchant without
// bindings. A page limit out of range is ErrInvalid.
func (s *Store) Bindings(ctx context.Context, f BindingFilter, p Page) (*Rows[Binding], error) {
	if err := s.knownMerchant(ctx, f.Merchant); err != nil {
		return nil, err
	}
	now := s.Now()
	return openRows(ctx, s.db, bindingListing(f), p, func(r scanner) (Binding, error) {
		b, err := scanBinding(r, now)
		if err != nil {
			return Binding{}, err
		}
		return *b, nil
	})
}

// bindingListing is the query of the bindings f selects.
func bindingListing(f BindingFilter) listing {
	q := listing{name: "list bindings", table: "bindings", cols: bindingCols, at: "created_at"}
	if f.Merchant != "" {
		q.where("merchant = ?", f.Merchant)
	}
	if f.Order != "" {
		q.where("order_id = ?", f.Order)
	}
	return q
}

// ListBindings returns bindings oldest first, filtered by merchant and
// order when they are non-empty (see Bindings). It holds them all in
// memory: listings of any length read Bindings instead.
func (s *Store) ListBindings(ctx context.Context, merchant, order string) ([]Binding, error) {
	rows, err := s.Bindings(ctx, BindingFilter{Merchant: merchant, Order: order}, Page{})
	if err != nil {
		return nil, err
	}
	return collect(rows)
}

// listing is the query of one listing: a table read in the order of its
// key (at, id), with equality conditions, a window [from, to) of its time
// and, for a page, the keys it starts after and ends at. The conditions
// are fixed SQL fragments; every value is a bound argument.
type listing struct {
	name  string // for errors: "list cdrs"
	table string
	cols  string
	at    string // the key's time column; the key's ID column is id
	conds []string
	args  []any
	// from and to bound the time when set; after and through bound the
	// key when set.
	from, to       *int64
	after, through *Key
}

// where adds an equality condition and its argument.
func (q *listing) where(cond string, arg any) {
	q.conds = append(q.conds, cond)
	q.args = append(q.args, arg)
}

// window keeps the rows whose time is in [from, to); a zero bound is
// open.
func (q *listing) window(from, to time.Time) {
	if !from.IsZero() {
		v := nsBound(from)
		q.from = &v
	}
	if !to.IsZero() {
		v := nsBound(to)
		q.to = &v
	}
}

// sql returns the query of cols (the listing's columns or others) with
// the listing's conditions, in key order, followed by tail, and its
// arguments, followed by tailArgs. Of two lower bounds, and of two upper
// ones, it states only the tighter, which it lets the database search the
// index from: after, once it is inside the window, implies from, and
// through, a row of the window, implies to.
func (q *listing) sql(cols, tail string, tailArgs ...any) (string, []any) {
	conds := slices.Clone(q.conds)
	args := slices.Clone(q.args)
	switch {
	case q.after != nil && (q.from == nil || nsBound(q.after.At) >= *q.from):
		conds = append(conds, "("+q.at+", id) > (?, ?)")
		args = append(args, nsBound(q.after.At), q.after.ID)
	case q.from != nil:
		conds = append(conds, q.at+" >= ?")
		args = append(args, *q.from)
	}
	switch {
	case q.through != nil:
		conds = append(conds, "("+q.at+", id) <= (?, ?)")
		args = append(args, nsBound(q.through.At), q.through.ID)
	case q.to != nil:
		conds = append(conds, q.at+" < ?")
		args = append(args, *q.to)
	}
	var b strings.Builder
	b.WriteString("SELECT " + cols + " FROM " + q.table)
	for i, c := range conds {
		if i == 0 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		b.WriteString(c)
	}
	b.WriteString(" ORDER BY " + q.at + ", id" + tail)
	return b.String(), append(args, tailArgs...)
}

// openRows runs q for page p. With a limit it first finds where the page
// ends, reading only the keys (from the index that holds the listing's
// order): the page is then every row up to that key, and the next page
// starts after it. That way the next page is known before the first row
// is sent, which lets an HTTP response name it in a header and still
// stream the rows. A row written inside the page's range between the two
// queries is read in this page, never skipped.
func openRows[T any](ctx context.Context, d *db, q listing, p Page, scan func(scanner) (T, error)) (*Rows[T], error) {
	if p.Limit < 0 || p.Limit > MaxPageLimit {
		return nil, fmt.Errorf("%w page limit %d: want 1 to %d", ErrInvalid, p.Limit, MaxPageLimit)
	}
	if !p.After.IsZero() {
		q.after = &p.After
	}
	r := &Rows[T]{scan: scan, what: q.name}
	var tail string
	var tailArgs []any
	if p.Limit > 0 {
		// The page's last key and whether a row follows it.
		ends, err := pageEnd(ctx, d, q, p.Limit)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.name, err)
		}
		switch len(ends) {
		case 0:
			// Fewer rows than the limit are left: this is the last page.
			tail, tailArgs = " LIMIT ?", []any{p.Limit}
		default:
			q.through = &ends[0]
			r.next, r.more = ends[0], len(ends) == 2
		}
	}
	query, args := q.sql(q.cols, tail, tailArgs...)
	rows, err := d.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.name, err)
	}
	r.rows = rows
	return r, nil
}

// pageEnd returns the key of the limit-th row of q and, when there is one,
// of the row after it.
func pageEnd(ctx context.Context, d *db, q listing, limit int) ([]Key, error) {
	query, args := q.sql(q.at+", id", " LIMIT 2 OFFSET ?", limit-1)
	rows, err := d.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []Key
	for rows.Next() {
		var at int64
		var id string
		if err := rows.Scan(&at, &id); err != nil {
			return nil, err
		}
		keys = append(keys, Key{At: time.Unix(0, at).UTC(), ID: id})
	}
	return keys, rows.Err()
}

// collect reads rows to the end into a slice and closes them.
func collect[T any](rows *Rows[T]) (out []T, err error) {
	defer func() {
		if cerr := rows.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("%s: %w", rows.what, cerr)
		}
	}()
	for rows.Next() {
		out = append(out, rows.Row())
	}
	return out, rows.Err()
}

// nsBound is t in Unix nanoseconds, clamped to what an int64 holds (the
// years 1678 to 2262), so that a far bound stays a bound rather than
// wrapping around.
func nsBound(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
