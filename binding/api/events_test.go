package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/binding/api"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/events"
)

const hookSecret = "whsec-0123456789abcdef"

// TestWebhookEndpoints: a merchant's webhook is registered, shown with its
// secret masked, replaced and removed; a URL on a private address, a
// short secret, an unknown merchant and bad input are refused, each with
// one clear error and nothing stored.
func TestWebhookEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *api.Options) {
		// A resolver of the test's own: no test depends on DNS.
		lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
			if host == "localhost" {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
			return nil, fmt.Errorf("lookup %s: no such host", host)
		}
		o.CheckWebhook = func(ctx context.Context, url string) error { return events.CheckURL(ctx, url, false, lookup) }
	})
	seedAPI(t, h)
	put := func(merchant string, body any) response {
		return h.do(request{method: "PUT", path: "/v1/merchants/" + merchant + "/webhook", body: body})
	}
	before := h.snapshot()
	for name, c := range map[string]struct {
		merchant string
		body     any
		status   int
		msg      string
	}{
		"private":   {"m1", map[string]string{"url": "http://127.0.0.1:9000/hook", "secret": hookSecret}, 422, "loopback or private address"},
		"metadata":  {"m1", map[string]string{"url": "http://169.254.169.254/", "secret": hookSecret}, 422, "loopback or private address"},
		"localhost": {"m1", map[string]string{"url": "https://localhost/hook", "secret": hookSecret}, 422, "loopback or private address"},
		"secret":    {"m1", map[string]string{"url": "https://203.0.113.10/hook", "secret": "too-short"}, 422, "want at least 16"},
		"scheme":    {"m1", map[string]string{"url": "ftp://203.0.113.10/", "secret": hookSecret}, 422, "want http:// or https://"},
		"merchant":  {"nosuch", map[string]string{"url": "https://203.0.113.10/hook", "secret": hookSecret}, 404, "not found"},
		"field":     {"m1", map[string]string{"url": "https://203.0.113.10/hook", "secret": hookSecret, "colour": "red"}, 400, "unknown field"},
		"no body":   {"m1", "", 400, "want a JSON object"},
	} {
		r := put(c.merchant, c.body)
		require.Equal(t, c.status, r.status, "%s: %s", name, r.body)
		require.Contains(t, r.object(t)["error"], c.msg, name)
		require.NotContains(t, string(r.body), hookSecret[:10], "%s: the secret is never echoed", name)
	}
	require.Equal(t, before, h.snapshot(), "a refused webhook changes nothing")
	r := h.do(request{method: "GET", path: "/v1/merchants/m1/webhook"})
	require.Equal(t, http.StatusNotFound, r.status)

	r = put("m1", map[string]string{"url": "https://203.0.113.10/hook", "secret": hookSecret})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	wh := r.object(t)
	require.Equal(t, "https://203.0.113.10/hook", wh["url"])
	require.Equal(t, "****cdef", wh["secret"])
	r = put("m1", map[string]string{"url": "https://203.0.113.11/hook", "secret": "another-secret-0001"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = h.do(request{method: "GET", path: "/v1/merchants/m1/webhook"})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "https://203.0.113.11/hook", r.object(t)["url"])
	require.Equal(t, "****0001", r.object(t)["secret"])
	require.NotContains(t, string(r.body), "another-secret")

	r = h.do(request{method: "DELETE", path: "/v1/merchants/m1/webhook"})
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	r = h.do(request{method: "DELETE", path: "/v1/merchants/m1/webhook"})
	require.Equal(t, http.StatusNotFound, r.status)
	r = h.do(request{method: "DELETE", path: "/v1/merchants/nosuch/webhook"})
	require.Equal(t, http.StatusNotFound, r.status)
}

// TestEventEndpoints: a call's events are listed by merchant and status,
// newest first, with their data and without B; an event is retried by
// hand; bad filters are refused.
func TestEventEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	b := createBinding(t, h, "o-1", consignee)
	ctx := context.Background()
	_, err := h.store.SetWebhook(ctx, "m1", "https://203.0.113.10/hook", hookSecret)
	require.NoError(t, err)
	at := time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)
	c := &callrec.Record{CallID: "a@x", Merchant: "m1", BindingID: b["id"].(string), Order: "o-1", Host: "17000000001",
		Extension: b["extension"].(string), Direction: callrec.DirectionToConsignee, Caller: "alice", StartedAt: at}
	require.NoError(t, h.store.StartCDR(ctx, c))
	rates, err := binding.ParseRates("0.02", "0.00018")
	require.NoError(t, err)
	c.EndedAt, c.Disposition = at.Add(time.Minute), callrec.DispositionNoAnswer
	require.NoError(t, h.store.FinishCDR(ctx, c, rates))

	r := h.do(request{method: "GET", path: "/v1/events?merchant=m1"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var es []map[string]any
	r.decode(t, &es)
	require.Len(t, es, 2)
	require.Equal(t, "call.ended", es[0]["type"], "newest first")
	require.Equal(t, "call.started", es[1]["type"])
	require.Equal(t, c.ID, es[0]["call_id"])
	require.EqualValues(t, 2, es[0]["sequence"])
	require.Equal(t, "pending", es[0]["status"])
	require.Equal(t, "no_answer", es[0]["data"].(map[string]any)["disposition"])

	r = h.do(request{method: "GET", path: "/v1/events?status=failed"})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "[]\n", string(r.body))
	r = h.do(request{method: "GET", path: "/v1/events?merchant=m1&status=pending&limit=1"})
	require.Equal(t, http.StatusOK, r.status)
	r.decode(t, &es)
	require.Len(t, es, 1)

	for path, want := range map[string]int{
		"/v1/events?merchant=nosuch": 404,
		"/v1/events?status=lost":     400,
		"/v1/events?limit=0":         400,
		"/v1/events?limit=5000":      400,
		"/v1/events?colour=red":      400,
	} {
		r := h.do(request{method: "GET", path: path})
		require.Equal(t, want, r.status, "%s: %s", path, r.body)
	}

	// The first event fails for good; retried by hand, it is pending again.
	ds, err := h.store.ClaimEvents(ctx, at.Add(time.Hour), 5, time.Minute)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.NoError(t, h.store.EventAttemptFailed(ctx, ds[0], "HTTP 500 Internal Server Error", time.Time{}))
	r = h.do(request{method: "GET", path: "/v1/events?status=failed"})
	r.decode(t, &es)
	require.Len(t, es, 1)
	require.Equal(t, "HTTP 500 Internal Server Error", es[0]["last_error"])
	r = h.do(request{method: "POST", path: "/v1/events/" + ds[0].ID + "/retry"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "pending", r.object(t)["status"])
	require.EqualValues(t, 0, r.object(t)["attempts"])
	r = h.do(request{method: "POST", path: "/v1/events/ev_nosuch/retry"})
	require.Equal(t, http.StatusNotFound, r.status)
	ds, err = h.store.ClaimEvents(ctx, time.Now().Add(time.Hour), 5, time.Minute)
	require.NoError(t, err)
	require.NoError(t, h.store.EventDelivered(ctx, ds[0], time.Now()))
	r = h.do(request{method: "POST", path: "/v1/events/" + ds[0].ID + "/retry"})
	require.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	require.True(t, strings.Contains(r.object(t)["error"].(string), "delivered"))
}
