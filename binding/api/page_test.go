package api_test

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
)

// linkRe matches the Link header of a page that has a next one.
var linkRe = regexp.MustCompile(`^<(/v1/[a-z]+\?[^>]+)>; rel="next"$`)

// followPages GETs path and then each next page its Link header names,
// and returns every page's response.
func followPages(t *testing.T, h *harness, path, accept string) []response {
	t.Helper()
	var pages []response
	for path != "" {
		r := h.do(request{method: "GET", path: path, accept: accept})
		require.Equal(t, http.StatusOK, r.status, "GET %s: %s", path, r.body)
		pages = append(pages, r)
		require.Less(t, len(pages), 100, "paging does not end")
		path = ""
		if link := r.header.Get("Link"); link != "" {
			m := linkRe.FindStringSubmatch(link)
			require.NotNil(t, m, "Link: %s", link)
			path = m[1]
		}
	}
	return pages
}

// ids returns the "id" of each object of a JSON array body.
func ids(t *testing.T, r response) []string {
	t.Helper()
	var rows []map[string]any
	r.decode(t, &rows)
	out := make([]string, len(rows))
	for i, row := range rows {
		out[i] = row["id"].(string)
	}
	return out
}

// TestCDRPagesFollowLink: with limit, /v1/cdrs answers pages whose Link
// header leads from each to the next, keeping the filters, until the last,
// which has none; together they hold every record once, in order, in JSON
// and in CSV, although records that started in the same nanosecond
// straddle the pages' ends. Without limit the whole list comes at once.
func TestCDRPagesFollowLink(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	ctx := context.Background()
	start := time.Date(2026, 11, 10, 1, 0, 0, 0, time.UTC)
	for i := range 23 {
		// Five records a second, their IDs in another order.
		require.NoError(t, h.store.StartCDR(ctx, &callrec.Record{ID: fmt.Sprintf("c_%016x", (i*37)%100),
			CallID: fmt.Sprintf("call-%d", i), Merchant: "m1", Caller: "alice",
			StartedAt: start.Add(time.Duration(i/5) * time.Second)}))
	}
	all := h.do(request{method: "GET", path: "/v1/cdrs?merchant=m1"})
	require.Equal(t, http.StatusOK, all.status)
	require.Empty(t, all.header.Get("Link"), "no limit, no pages")
	want := ids(t, all)
	require.Len(t, want, 23)

	for _, limit := range []int{1, 4, 5, 6, 22, 23, 24} {
		pages := followPages(t, h, fmt.Sprintf("/v1/cdrs?merchant=m1&from=2026-11-10&limit=%d", limit), "")
		require.Len(t, pages, (23+limit-1)/limit, "limit %d", limit)
		var got []string
		for i, p := range pages {
			page := ids(t, p)
			if i < len(pages)-1 {
				require.Len(t, page, limit)
				next, err := url.Parse(linkRe.FindStringSubmatch(p.header.Get("Link"))[1])
				require.NoError(t, err)
				q := next.Query()
				require.Equal(t, "m1", q.Get("merchant"), "the filters stay")
				require.Equal(t, "2026-11-10", q.Get("from"))
				require.Equal(t, fmt.Sprint(limit), q.Get("limit"))
				require.Regexp(t, `^[A-Za-z0-9_-]+$`, q.Get("cursor"), "base64url")
			}
			got = append(got, page...)
		}
		require.Equal(t, want, got, "limit %d", limit)
	}

	// HEAD answers a page's headers, its Link among them, and no body.
	req, err := http.NewRequest(http.MethodHead, h.srv.URL+"/v1/cdrs?limit=4", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.token)
	res, err := h.srv.Client().Do(req)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Regexp(t, linkRe, res.Header.Get("Link"))
	require.Equal(t, "application/json", res.Header.Get("Content-Type"))

	// CSV pages: each a whole file with its header row.
	pages := followPages(t, h, "/v1/cdrs?limit=10", "text/csv")
	require.Len(t, pages, 3)
	var got []string
	for _, p := range pages {
		recs, err := csv.NewReader(strings.NewReader(string(p.body))).ReadAll()
		require.NoError(t, err)
		require.Equal(t, callrec.Columns(), recs[0])
		for _, rec := range recs[1:] {
			got = append(got, rec[0])
		}
	}
	require.Equal(t, want, got)
}

// TestBindingPagesFollowLink: /v1/bindings pages the same way, among
// bindings created in the same nanosecond.
func TestBindingPagesFollowLink(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 10, 1, 0, 0, 0, time.UTC)
	h := newStoreHarness(t, []binding.Option{binding.WithClock(func() time.Time { return now })})
	seedAPI(t, h)
	for i := range 9 {
		createBinding(t, h, fmt.Sprintf("o-%d", i), consignee)
	}
	all := h.do(request{method: "GET", path: "/v1/bindings?merchant=m1"})
	want := ids(t, all)
	require.Len(t, want, 9)
	for _, limit := range []int{1, 2, 4, 9} {
		var got []string
		for _, p := range followPages(t, h, fmt.Sprintf("/v1/bindings?merchant=m1&limit=%d", limit), "") {
			got = append(got, ids(t, p)...)
		}
		require.Equal(t, want, got, "limit %d", limit)
	}
	one := followPages(t, h, "/v1/bindings?merchant=m1&order=o-3&limit=5", "")
	require.Len(t, one, 1)
	require.Len(t, ids(t, one[0]), 1)
}

// TestPageParametersChecked: a limit out of range, a cursor the listing
// did not give out (garbled, another listing's, of another form) and a
// window that ends before it starts are each one clear 400.
func TestPageParametersChecked(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	cursor := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }
	for name, tc := range map[string]struct {
		path, msg string
	}{
		"zero limit":          {"/v1/cdrs?limit=0", `limit "0": want a whole number from 1 to 10000`},
		"negative limit":      {"/v1/cdrs?limit=-5", `limit "-5"`},
		"limit too large":     {"/v1/bindings?limit=10001", `limit "10001"`},
		"limit not a number":  {"/v1/cdrs?limit=ten", `limit "ten"`},
		"empty limit":         {"/v1/bindings?limit=", `limit ""`},
		"garbled cursor":      {"/v1/cdrs?limit=2&cursor=%25%25%25", "cursor: not a cursor of this listing"},
		"empty cursor":        {"/v1/cdrs?cursor=", "cursor: not a cursor of this listing"},
		"bindings cursor":     {"/v1/cdrs?limit=2&cursor=" + cursor("b1762736400000000000.b_0123456789abcdef"), "cursor: not a cursor"},
		"cdrs cursor":         {"/v1/bindings?limit=2&cursor=" + cursor("c1762736400000000000.c_0123456789abcdef"), "cursor: not a cursor"},
		"cursor without id":   {"/v1/cdrs?cursor=" + cursor("c1762736400000000000."), "cursor: not a cursor"},
		"cursor without time": {"/v1/cdrs?cursor=" + cursor("cxyz.c_1"), "cursor: not a cursor"},
		"cursor with space":   {"/v1/cdrs?cursor=" + cursor("c1.c_1 OR 1=1"), "cursor: not a cursor"},
		"long cursor":         {"/v1/cdrs?cursor=" + strings.Repeat("A", 400), "cursor: not a cursor"},
		"from after to":       {"/v1/cdrs?from=2026-11-02&to=2026-11-01", "from 2026-11-02 is after to 2026-11-01"},
		"misspelt limit":      {"/v1/cdrs?limt=5", `unknown query parameter "limt"`},
	} {
		r := h.do(request{method: "GET", path: tc.path})
		require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", name, r.body)
		require.Contains(t, r.object(t)["error"], tc.msg, name)
	}

	// A cursor the API gave out works without a limit too: the rest.
	r := h.do(request{method: "GET", path: "/v1/cdrs?from=2026-11-01&to=2026-11-01&cursor=" + cursor("c1762736400000000000.c_0")})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.JSONEq(t, "[]", string(r.body), "an empty window")
}

// TestOpenAPIDocumentsPaging: both listings document limit and cursor,
// and the Link header of their pages.
func TestOpenAPIDocumentsPaging(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, path := range []string{"/v1/cdrs", "/v1/bindings"} {
		op := h.operation("GET", path)
		require.NotNil(t, op, path)
		var params []string
		for _, p := range op["parameters"].([]any) {
			params = append(params, h.resolve(p.(map[string]any))["name"].(string))
		}
		require.Subset(t, params, []string{"limit", "cursor"}, path)
		ok := h.resolve(op["responses"].(map[string]any)["200"].(map[string]any))
		require.Contains(t, ok["headers"], "Link", path)
	}
	limit := h.resolve(map[string]any{"$ref": "#/components/parameters/Limit"})
	require.EqualValues(t, binding.MaxPageLimit, limit["schema"].(map[string]any)["maximum"])
}
