package binding

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// pageAll reads a listing page by page, limit rows a page, following
// NextPage from the first page to the last, and returns the rows in the
// order read and the number of pages. Every page but the last is full.
func pageAll[T any](t *testing.T, open func(Page) (*Rows[T], error), limit int) (all []T, pages int) {
	t.Helper()
	p := Page{Limit: limit}
	for {
		rows, err := open(p)
		require.NoError(t, err)
		n := 0
		for rows.Next() {
			all = append(all, rows.Row())
			n++
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		pages++
		next, more := rows.NextPage()
		require.LessOrEqual(t, n, limit)
		if !more {
			return all, pages
		}
		require.Equal(t, limit, n, "page %d has a next page, so it is full", pages)
		require.Less(t, pages, 1000, "paging does not end")
		p.After = next
	}
}

// cdrIDs returns the IDs of cs.
func cdrIDs(cs []callrec.Record) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

// TestCDRPagesNeitherSkipNorRepeat: pages of every size, followed from
// cursor to cursor, read each record exactly once and in the listing's
// order, although seven records share each of four start times, to the
// nanosecond, so that pages end in the middle of a run of equal times;
// filters hold across pages.
func TestCDRPagesNeitherSkipNorRepeat(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s)
		ctx := context.Background()
		const tied = 28
		for i := range 40 {
			at := t0.Add(time.Duration(i/7) * time.Second)
			if i >= tied {
				at = t0.Add(time.Hour + time.Duration(i)*time.Minute)
			}
			// IDs in another order than the rows are written.
			require.NoError(t, s.StartCDR(ctx, &callrec.Record{ID: fmt.Sprintf("c_%016x", (i*7919)%1000),
				CallID: fmt.Sprintf("call-%d", i), Merchant: []string{"m1", "m2"}[i%2], StartedAt: at}))
		}
		all, err := s.ListCDRs(ctx, "", time.Time{}, time.Time{})
		require.NoError(t, err)
		require.Len(t, all, 40)
		require.True(t, slices.IsSortedFunc(all, func(a, b callrec.Record) int {
			return cmpKeys(Key{a.StartedAt, a.ID}, Key{b.StartedAt, b.ID})
		}), "oldest first, then by ID")
		require.False(t, slices.IsSorted(cdrIDs(all)), "the IDs alone are in another order")

		for _, limit := range []int{1, 2, 3, 6, 7, 8, 13, 39, 40, 41, MaxPageLimit} {
			got, pages := pageAll(t, func(p Page) (*Rows[callrec.Record], error) {
				return s.CDRs(ctx, CDRFilter{}, p)
			}, limit)
			require.Equal(t, cdrIDs(all), cdrIDs(got), "limit %d", limit)
			require.Equal(t, (len(all)+limit-1)/limit, pages, "limit %d: no empty last page", limit)
		}

		// A merchant's calls in a window, in pages of two.
		f := CDRFilter{Merchant: "m1", From: t0.Add(time.Second), To: t0.Add(2 * time.Hour)}
		window, err := s.ListCDRs(ctx, f.Merchant, f.From, f.To)
		require.NoError(t, err)
		require.NotEmpty(t, window)
		for _, c := range window {
			require.Equal(t, "m1", c.Merchant)
			require.False(t, c.StartedAt.Before(f.From) || !c.StartedAt.Before(f.To), c.StartedAt)
		}
		got, _ := pageAll(t, func(p Page) (*Rows[callrec.Record], error) { return s.CDRs(ctx, f, p) }, 2)
		require.Equal(t, cdrIDs(window), cdrIDs(got))

		// A page of nothing: after the last record.
		last := all[len(all)-1]
		rows, err := s.CDRs(ctx, CDRFilter{}, Page{After: Key{last.StartedAt, last.ID}, Limit: 5})
		require.NoError(t, err)
		require.False(t, rows.Next())
		require.NoError(t, rows.Err())
		_, more := rows.NextPage()
		require.False(t, more)
		require.NoError(t, rows.Close())

		// Without a limit, the rows after a key stream to the end.
		k := Key{all[9].StartedAt, all[9].ID}
		rest, _ := pageAll(t, func(p Page) (*Rows[callrec.Record], error) {
			return s.CDRs(ctx, CDRFilter{}, Page{After: k})
		}, 1000)
		require.Equal(t, cdrIDs(all[10:]), cdrIDs(rest))
	})
}

// TestBindingPagesNeitherSkipNorRepeat: bindings created in one instant
// page like CDRs do.
func TestBindingPagesNeitherSkipNorRepeat(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001", "17000000002")
		ctx := context.Background()
		for i := range 15 {
			req := shipped(fmt.Sprintf("o-%d", i))
			req.Merchant = []string{"m1", "m2"}[i%2]
			_, err := s.CreateBinding(ctx, req, t0.Add(time.Duration(i/5)*time.Hour))
			require.NoError(t, err)
		}
		ids := func(bs []Binding) []string {
			out := make([]string, len(bs))
			for i, b := range bs {
				out[i] = b.ID
			}
			return out
		}
		for _, f := range []BindingFilter{{}, {Merchant: "m1"}, {Merchant: "m2", Order: "o-3"}} {
			all, err := s.ListBindings(ctx, f.Merchant, f.Order)
			require.NoError(t, err)
			require.NotEmpty(t, all)
			for _, limit := range []int{1, 2, 4, 5, 15} {
				got, _ := pageAll(t, func(p Page) (*Rows[Binding], error) { return s.Bindings(ctx, f, p) }, limit)
				require.Equal(t, ids(all), ids(got), "filter %+v, limit %d", f, limit)
			}
		}
		_, err := s.Bindings(ctx, BindingFilter{Merchant: "nosuch"}, Page{Limit: 2})
		require.ErrorIs(t, err, ErrNotFound)
	})
}

// TestPageLimitChecked: a limit out of range is refused, not clamped.
func TestPageLimitChecked(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	ctx := context.Background()
	for _, limit := range []int{-1, MaxPageLimit + 1} {
		_, err := s.CDRs(ctx, CDRFilter{}, Page{Limit: limit})
		require.ErrorIs(t, err, ErrInvalid, limit)
		_, err = s.Bindings(ctx, BindingFilter{}, Page{Limit: limit})
		require.ErrorIs(t, err, ErrInvalid, limit)
	}
}

// TestListingsReadInIndexOrder pins that SQLite reads every listing, and
// the search for a page's end, in the order of an index: no sort of the
// rows first ("USE TEMP B-TREE"), which would gather a whole export before
// its first row, and a page that starts at its key rather than reading
// the rows before it.
func TestListingsReadInIndexOrder(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	k := Key{At: t0, ID: "c_0"}
	for name, tc := range map[string]struct {
		q     listing
		index string
	}{
		"all cdrs":           {cdrListing(CDRFilter{}), "cdrs_started_id"},
		"a window of cdrs":   {cdrListing(CDRFilter{From: t0, To: t0.Add(time.Hour)}), "cdrs_started_id"},
		"a merchant's cdrs":  {cdrListing(CDRFilter{Merchant: "m1"}), "cdrs_merchant_started_id"},
		"a merchant's month": {cdrListing(CDRFilter{Merchant: "m1", From: t0, To: t0.Add(time.Hour)}), "cdrs_merchant_started_id"},
		"all bindings":       {bindingListing(BindingFilter{}), "bindings_created_id"},
		"a merchant's":       {bindingListing(BindingFilter{Merchant: "m1"}), "bindings_merchant_created_id"},
	} {
		for _, paged := range []bool{false, true} {
			q := tc.q
			if paged {
				q.after, q.through = &k, &k
			}
			page, pageArgs := q.sql(q.cols, "")
			end, endArgs := q.sql(q.at+", id", " LIMIT 2 OFFSET ?", 9)
			for _, plan := range []string{sqlitePlan(t, s, page, pageArgs...), sqlitePlan(t, s, end, endArgs...)} {
				require.NotContains(t, plan, "TEMP B-TREE", "%s (paged %v): %s", name, paged, plan)
				require.Regexp(t, `INDEX `+tc.index+`( |$)`, plan, "%s (paged %v)", name, paged)
				if paged {
					require.Regexp(t, `SEARCH .*\(`+q.at+`,id\)>\(\?,\?\) AND \(`+q.at+`,id\)<`, plan,
						"%s: a page searches the index from its first key to its last", name)
				}
			}
		}
	}
}

// TestOpenRecordsByNode: the open records a restarting node closes are
// found through cdrs_open_by_node, and the index of all open records by
// ended_at, which served no query and cost every call's first and last
// write, is gone (migration 0017).
func TestOpenRecordsByNode(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	plan := sqlitePlan(t, s, `SELECT id, leg_a, leg_b FROM cdrs
		WHERE ended_at IS NULL AND node IN (?, '') AND (leg_a IS NOT NULL OR leg_b IS NOT NULL)`, "n1")
	require.Contains(t, plan, "cdrs_open_by_node", plan)
	var n int
	require.NoError(t, s.db.QueryRowContext(context.Background(),
		`SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'cdrs_open'`).Scan(&n))
	require.Zero(t, n)
}

// sqlitePlan returns SQLite's query plan of query, one line.
func sqlitePlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.db.QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+query, args...)
	require.NoError(t, err)
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		lines = append(lines, detail)
	}
	require.NoError(t, rows.Err())
	return strings.Join(lines, " / ")
}

// cmpKeys orders keys as the listings do.
func cmpKeys(a, b Key) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}
