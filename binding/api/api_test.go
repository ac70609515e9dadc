package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/binding/api"
	"github.com/vnum/vnum/callrec"
)

// seedAPI adds merchant m1 with account alice and two host numbers
// through the API.
func seedAPI(t *testing.T, h *harness) {
	t.Helper()
	r := h.do(request{method: "POST", path: "/v1/merchants", body: map[string]string{"id": "m1", "name": "Shop One"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = h.do(request{method: "POST", path: "/v1/merchants/m1/accounts",
		body: map[string]string{"user": "alice", "password": "correct horse"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = h.do(request{method: "POST", path: "/v1/numbers", body: map[string][]string{"numbers": {"17000000001", "+8617000000002"}}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
}

// createBinding creates a shipped order's binding through the API.
func createBinding(t *testing.T, h *harness, order, b string) map[string]any {
	t.Helper()
	r := h.do(request{method: "POST", path: "/v1/bindings", body: map[string]string{
		"merchant": "m1", "order": order, "consignee": b, "order_status": "shipped"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	return r.object(t)
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	calls := []callrec.LiveCall{{ID: "call-1", Merchant: "m1", Binding: "b_1", Host: "17000000001", Extension: "1234",
		State: "bridged", StartedAt: time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)}}
	h := newHarness(t, func(o *api.Options) {
		o.Calls = func() []callrec.LiveCall { return calls }
		o.Metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			if _, err := w.Write([]byte("vnum_calls_active 1\n")); err != nil {
				t.Error(err) // not FailNow: this runs on the server's goroutine
			}
		})
	})

	// Tenants.
	r := h.do(request{method: "POST", path: "/v1/merchants", body: map[string]string{"id": "m1", "name": "Shop One"}})
	require.Equal(t, http.StatusCreated, r.status)
	m := r.object(t)
	require.Equal(t, "m1", m["id"])
	require.Equal(t, "Shop One", m["name"])
	r = h.do(request{method: "POST", path: "/v1/merchants", body: map[string]string{"id": "m2"}})
	require.Equal(t, http.StatusCreated, r.status)
	require.Equal(t, "m2", r.object(t)["name"], "the name defaults to the id")

	r = h.do(request{method: "POST", path: "/v1/merchants/m1/accounts",
		body: map[string]string{"user": "alice", "password": "correct horse"}})
	require.Equal(t, http.StatusCreated, r.status)
	require.JSONEq(t, `{"user":"alice","merchant":"m1","realm":"vnum"}`, string(r.body))
	require.NotContains(t, string(r.body), "horse")
	acct, err := h.store.Account(context.Background(), "alice")
	require.NoError(t, err)
	require.Equal(t, binding.HA1("MD5", "alice", binding.Realm, "correct horse"), acct.HA1MD5)

	// The pool.
	r = h.do(request{method: "POST", path: "/v1/numbers", body: map[string][]string{"numbers": {"17000000001", "+86 170-0000-0002"}}})
	require.Equal(t, http.StatusCreated, r.status)
	var nums []binding.Number
	r.decode(t, &nums)
	require.Len(t, nums, 2)
	require.Equal(t, "17000000002", nums[1].Host, "stored as 11 digits")
	r = h.do(request{method: "GET", path: "/v1/numbers"})
	require.Equal(t, http.StatusOK, r.status)
	r.decode(t, &nums)
	require.Len(t, nums, 2)

	// Create, read and list.
	r = h.do(request{method: "POST", path: "/v1/bindings", body: map[string]string{
		"merchant": "m1", "order": "o-1", "consignee": "+86 139-1234-5678", "order_status": "shipped"}})
	require.Equal(t, http.StatusCreated, r.status)
	b := r.object(t)
	id := b["id"].(string)
	require.Equal(t, "/v1/bindings/"+id, r.header.Get("Location"))
	for _, k := range []string{"id", "host", "extension", "display", "dial", "expires_at"} {
		require.NotEmpty(t, b[k], k)
	}
	require.NotContains(t, b, "consignee")
	require.Equal(t, b["host"].(string)+"转"+b["extension"].(string), b["display"])
	require.Equal(t, "active", b["status"])
	created, err := time.Parse(time.RFC3339, b["created_at"].(string))
	require.NoError(t, err)
	expires, err := time.Parse(time.RFC3339, b["expires_at"].(string))
	require.NoError(t, err)
	require.Equal(t, 720*time.Hour, expires.Sub(created), "binding.ttl by default")

	r = h.do(request{method: "POST", path: "/v1/bindings", body: map[string]string{
		"merchant": "m1", "order": "o-2", "consignee": otherConsignee, "order_status": "delivered", "ttl": "2h"}})
	require.Equal(t, http.StatusCreated, r.status)
	b2 := r.object(t)
	created, err = time.Parse(time.RFC3339, b2["created_at"].(string))
	require.NoError(t, err)
	expires, err = time.Parse(time.RFC3339, b2["expires_at"].(string))
	require.NoError(t, err)
	require.Equal(t, 2*time.Hour, expires.Sub(created))

	r = h.do(request{method: "GET", path: "/v1/bindings/" + id})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, b["extension"], r.object(t)["extension"])
	stored, err := h.store.GetBinding(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, "+8613912345678", stored.Consignee, "stored normalised")

	var list []map[string]any
	r = h.do(request{method: "GET", path: "/v1/bindings?merchant=m1&order=o-1"})
	require.Equal(t, http.StatusOK, r.status)
	r.decode(t, &list)
	require.Len(t, list, 1)
	require.Equal(t, id, list[0]["id"])
	r = h.do(request{method: "GET", path: "/v1/bindings"})
	r.decode(t, &list)
	require.Len(t, list, 2)
	r = h.do(request{method: "GET", path: "/v1/bindings?merchant=m2"})
	require.Equal(t, "[]\n", string(r.body))

	// Renew without a body, then with a ttl; the old binding ends.
	r = h.do(request{method: "POST", path: "/v1/bindings/" + id + "/renew"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	renewed := r.object(t)
	require.NotEqual(t, id, renewed["id"])
	require.Equal(t, "o-1", renewed["order"])
	require.Equal(t, "/v1/bindings/"+renewed["id"].(string), r.header.Get("Location"))
	r = h.do(request{method: "GET", path: "/v1/bindings/" + id})
	require.Equal(t, "released", r.object(t)["status"])
	r = h.do(request{method: "POST", path: "/v1/bindings/" + renewed["id"].(string) + "/renew", body: `{"ttl":"90m"}`})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	renewed = r.object(t)
	created, err = time.Parse(time.RFC3339, renewed["created_at"].(string))
	require.NoError(t, err)
	expires, err = time.Parse(time.RFC3339, renewed["expires_at"].(string))
	require.NoError(t, err)
	require.Equal(t, 90*time.Minute, expires.Sub(created))

	// Release.
	r = h.do(request{method: "DELETE", path: "/v1/bindings/" + renewed["id"].(string)})
	require.Equal(t, http.StatusOK, r.status)
	released := r.object(t)
	require.Equal(t, "released", released["status"])
	require.NotNil(t, released["released_at"])

	// Calls, the document and the probes.
	r = h.do(request{method: "GET", path: "/v1/calls"})
	require.Equal(t, http.StatusOK, r.status)
	raw, err := json.Marshal(calls)
	require.NoError(t, err)
	require.JSONEq(t, string(raw), string(r.body))
	r = h.do(request{method: "GET", path: "/v1/openapi.json"})
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, string(api.OpenAPI()), string(r.body))
	r = h.do(request{method: "GET", path: "/healthz", auth: str("")})
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"status":"ok"}`, string(r.body))
	r = h.do(request{method: "GET", path: "/readyz", auth: str("")})
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"status":"ready"}`, string(r.body))
	r = h.do(request{method: "GET", path: "/metrics", auth: str("")})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "vnum_calls_active 1\n", string(r.body))
}

func TestCDRExport(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	b := createBinding(t, h, "o-1", consignee)
	ctx := context.Background()
	rates, err := binding.ParseRates("0.02", "0.00018")
	require.NoError(t, err)
	// 2026-11-01 00:30 in Shanghai is 2026-10-31 16:30 UTC.
	start := time.Date(2026, 10, 31, 16, 30, 0, 0, time.UTC)
	for i, talk := range []time.Duration{61 * time.Second, 0} {
		c := &callrec.Record{CallID: "call-" + string(rune('a'+i)), Merchant: "m1", BindingID: b["id"].(string),
			Order: "o-1", Host: b["host"].(string), Extension: b["extension"].(string),
			Direction: callrec.DirectionToConsignee, Caller: "alice", StartedAt: start.Add(time.Duration(i) * time.Hour)}
		require.NoError(t, h.store.StartCDR(ctx, c))
		if talk > 0 {
			c.AnsweredAt = c.StartedAt.Add(5 * time.Second)
			c.EndedAt = c.AnsweredAt.Add(talk)
		} else {
			c.Disposition, c.EndedAt = callrec.DispositionNoAnswer, c.StartedAt.Add(time.Minute)
		}
		require.NoError(t, h.store.FinishCDR(ctx, c, rates))
	}
	// A call of another day and merchant, outside the window below.
	require.NoError(t, h.store.StartCDR(ctx, &callrec.Record{CallID: "other", Merchant: "m2", StartedAt: start.Add(48 * time.Hour)}))

	var rows []map[string]any
	r := h.do(request{method: "GET", path: "/v1/cdrs"})
	require.Equal(t, http.StatusOK, r.status)
	r.decode(t, &rows)
	require.Len(t, rows, 3)

	// Dates are read in the billing time zone.
	r = h.do(request{method: "GET", path: "/v1/cdrs?merchant=m1&from=2026-11-01&to=2026-11-02"})
	require.Equal(t, http.StatusOK, r.status)
	r.decode(t, &rows)
	require.Len(t, rows, 2)
	require.Equal(t, "0.04000", rows[0]["fee"])
	require.EqualValues(t, 2, rows[0]["billed_minutes"])
	r = h.do(request{method: "GET", path: "/v1/cdrs?from=2026-11-01T00:00:00%2B08:00&to=2026-10-31T17:00:00Z"})
	r.decode(t, &rows)
	require.Len(t, rows, 1, "RFC 3339 bounds")

	// CSV: the CLI's columns, the same cells as JSON.
	r = h.do(request{method: "GET", path: "/v1/cdrs?merchant=m1", accept: "text/csv"})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/csv; charset=utf-8", r.header.Get("Content-Type"))
	recs, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, callrec.Columns(), recs[0])
	require.Len(t, recs, 3)
	cs, err := h.store.ListCDRs(ctx, "m1", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Equal(t, cs[0].Row(), recs[1])

	// Content negotiation: JSON wins unless CSV is preferred.
	for accept, csvWanted := range map[string]bool{
		"text/csv":                               true,
		"text/csv;q=0.9, application/json;q=0.5": true,
		"application/json, text/csv":             false,
		"application/json;q=0.9, text/csv;q=0.9": false,
		"*/*":                                    false,
		"text/csv;q=0":                           false,
	} {
		r = h.do(request{method: "GET", path: "/v1/cdrs", accept: accept})
		require.Equal(t, csvWanted, strings.HasPrefix(r.header.Get("Content-Type"), "text/csv"), accept)
	}
}

func TestBillMatchesStore(t *testing.T) {
	t.Parallel()
	// The bills are read on 10 December, when every period of these
	// bindings has begun.
	asOf := time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)
	h := newStoreHarness(t, []binding.Option{binding.WithClock(func() time.Time { return asOf })})
	seedAPI(t, h)
	ctx := context.Background()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	rates, err := binding.ParseRates("0.02", "0.00018")
	require.NoError(t, err)
	// A binding across the October/November boundary in Shanghai, one
	// released after an hour, and an answered and a busy call.
	start := time.Date(2026, 10, 30, 20, 0, 0, 0, time.UTC)
	_, err = h.store.CreateBinding(ctx, binding.CreateRequest{Merchant: "m1", Order: "o-1", Consignee: consignee,
		OrderStatus: "shipped", TTL: 96 * time.Hour}, start)
	require.NoError(t, err)
	short, err := h.store.CreateBinding(ctx, binding.CreateRequest{Merchant: "m1", Order: "o-2", Consignee: consignee,
		OrderStatus: "shipped"}, start.Add(72*time.Hour))
	require.NoError(t, err)
	_, err = h.store.Release(ctx, short.ID, short.CreatedAt.Add(time.Hour))
	require.NoError(t, err)
	c := &callrec.Record{CallID: "a", Merchant: "m1", StartedAt: start.Add(50 * time.Hour)}
	require.NoError(t, h.store.StartCDR(ctx, c))
	c.AnsweredAt, c.EndedAt = c.StartedAt.Add(4*time.Second), c.StartedAt.Add(4*time.Second+150*time.Second)
	require.NoError(t, h.store.FinishCDR(ctx, c, rates))
	busy := &callrec.Record{CallID: "b", Merchant: "m1", StartedAt: start.Add(51 * time.Hour), Disposition: callrec.DispositionBusy}
	require.NoError(t, h.store.StartCDR(ctx, busy))
	require.NoError(t, h.store.FinishCDR(ctx, busy, rates))

	for _, month := range []string{"2026-10", "2026-11", "2026-12"} {
		want, err := h.store.Bill(ctx, "m1", month, shanghai, rates, "CNY")
		require.NoError(t, err)
		raw, err := json.Marshal(want)
		require.NoError(t, err)
		r := h.do(request{method: "GET", path: "/v1/bills/m1/" + month})
		require.Equal(t, http.StatusOK, r.status)
		require.JSONEq(t, string(raw), string(r.body), month)
	}
	r := h.do(request{method: "GET", path: "/v1/bills/m1/2026-11"})
	// The first binding has four periods starting at 04:00 Shanghai time on
	// 31 October and 1, 2 and 3 November: three are November's. The short
	// one, released after an hour, is one more day. The 150 s call is 3
	// minutes; the busy one is free.
	require.JSONEq(t, `{"merchant":"m1","month":"2026-11","currency":"CNY","binding_days":4,
		"rental":"0.00072","calls":1,"minutes":3,"call_fee":"0.06000","total":"0.06072"}`, string(r.body))
}

func TestReadyAndFailures(t *testing.T) {
	t.Parallel()
	notReady := errors.New("sip: not listening")
	h := newHarness(t, func(o *api.Options) {
		o.Ready = func(context.Context) error { return notReady }
		o.Calls = func() []callrec.LiveCall { panic("lister broke") }
	})
	r := h.do(request{method: "GET", path: "/readyz", auth: str("")})
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.JSONEq(t, `{"status":"unavailable","error":"sip: not listening"}`, string(r.body))

	// A panic is a 500 with nothing of its cause, which goes to the log.
	r = h.do(request{method: "GET", path: "/v1/calls"})
	require.Equal(t, http.StatusInternalServerError, r.status)
	require.JSONEq(t, `{"error":"internal error"}`, string(r.body))
	require.Contains(t, h.log.String(), "lister broke")

	// No metrics handler: 404.
	r = h.do(request{method: "GET", path: "/metrics", auth: str("")})
	require.Equal(t, http.StatusNotFound, r.status)

	// A store that fails is a generic 500, and the readiness default
	// (store ping) notices.
	plain := newHarness(t)
	require.NoError(t, plain.store.Close())
	r = plain.do(request{method: "GET", path: "/v1/numbers"})
	require.Equal(t, http.StatusInternalServerError, r.status)
	require.JSONEq(t, `{"error":"internal error"}`, string(r.body))
	require.Contains(t, plain.log.String(), "database is closed")
	r = plain.do(request{method: "GET", path: "/readyz", auth: str("")})
	require.Equal(t, http.StatusServiceUnavailable, r.status)
}

func TestCallsDefaultEmpty(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *api.Options) { o.Calls = func() []callrec.LiveCall { return nil } })
	r := h.do(request{method: "GET", path: "/v1/calls"})
	require.Equal(t, "[]\n", string(r.body))
	h = newHarness(t)
	r = h.do(request{method: "GET", path: "/v1/calls"})
	require.Equal(t, "[]\n", string(r.body))
}

// TestBillOfNewBinding is the bill a merchant reads right after creating
// a binding: one binding-day, not the whole ttl, and nothing yet for the
// months to come (README "CDRs and billing").
func TestBillOfNewBinding(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	created := time.Date(2026, 11, 10, 1, 0, 0, 0, time.UTC)
	now.Store(created.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	h := newStoreHarness(t, []binding.Option{binding.WithClock(clock)})
	seedAPI(t, h)
	createBinding(t, h, "o-1", consignee)
	now.Store(created.Add(time.Minute).UnixNano())
	days := func(month string) float64 {
		t.Helper()
		r := h.do(request{method: "GET", path: "/v1/bills/m1/" + month})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		return r.object(t)["binding_days"].(float64)
	}
	require.Equal(t, 1.0, days("2026-11"), "a binding created a minute ago")
	require.Equal(t, 0.0, days("2026-12"), "a month not yet begun")
	now.Store(created.Add(50 * time.Hour).UnixNano())
	require.Equal(t, 3.0, days("2026-11"), "the running month grows as periods start")
}

// TestCDRCSVFormulaSafe is a CDR export opened in a spreadsheet: a caller
// typed as a formula must come out as text (a leading single quote), and
// JSON keeps it as it is.
func TestCDRCSVFormulaSafe(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	ctx := context.Background()
	start := time.Date(2026, 11, 10, 1, 0, 0, 0, time.UTC)
	callers := []string{"=1+2*3", "+1-2", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "=HYPERLINK(\"http://x\")", "alice"}
	for i, caller := range callers {
		require.NoError(t, h.store.StartCDR(ctx, &callrec.Record{CallID: "c" + strconv.Itoa(i), Merchant: "m1",
			Caller: caller, StartedAt: start.Add(time.Duration(i) * time.Minute)}))
	}
	r := h.do(request{method: "GET", path: "/v1/cdrs?merchant=m1", accept: "text/csv"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	recs, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, len(callers)+1)
	col := -1
	for i, name := range recs[0] {
		if name == "caller" {
			col = i
		}
	}
	require.GreaterOrEqual(t, col, 0)
	for i, caller := range callers {
		want := "'" + caller
		if caller == "alice" {
			want = caller
		}
		require.Equal(t, want, recs[i+1][col], "caller %q", caller)
		for _, cell := range recs[i+1] {
			require.False(t, cell != "" && strings.ContainsAny(cell[:1], "=+-@\t\r"), "cell %q of row %d", cell, i)
		}
	}

	var rows []map[string]any
	r = h.do(request{method: "GET", path: "/v1/cdrs?merchant=m1"})
	r.decode(t, &rows)
	require.Equal(t, "=1+2*3", rows[0]["caller"], "JSON is not escaped")
}
