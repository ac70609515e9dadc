package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding/api"
)

// TestErrorsChangeNothing sends every kind of bad request and requires its
// status, a clear JSON error, and a store exactly as before.
func TestErrorsChangeNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	active := createBinding(t, h, "o-1", consignee)["id"].(string)
	ended := createBinding(t, h, "o-2", otherConsignee)["id"].(string)
	r := h.do(request{method: "DELETE", path: "/v1/bindings/" + ended})
	require.Equal(t, http.StatusOK, r.status)

	shipped := func(mutate func(map[string]any)) map[string]any {
		b := map[string]any{"merchant": "m1", "order": "o-new", "consignee": consignee, "order_status": "shipped"}
		if mutate != nil {
			mutate(b)
		}
		return b
	}
	big := `{"id":"m9","name":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`

	tests := map[string]struct {
		req    request
		status int
		msg    string
	}{
		// 401: no token, a wrong one, another scheme; writes included.
		"no token":            {request{method: "GET", path: "/v1/numbers", auth: str("")}, 401, "bearer token"},
		"wrong token":         {request{method: "GET", path: "/v1/numbers", auth: str("Bearer " + testToken + "x")}, 401, "bearer token"},
		"token prefix":        {request{method: "GET", path: "/v1/numbers", auth: str("Bearer " + testToken[:5])}, 401, "bearer token"},
		"basic auth":          {request{method: "GET", path: "/v1/numbers", auth: str("Basic bTE6cGFzc3dvcmQ=")}, 401, "bearer token"},
		"bare token":          {request{method: "GET", path: "/v1/numbers", auth: str(testToken)}, 401, "bearer token"},
		"write without token": {request{method: "POST", path: "/v1/merchants", body: `{"id":"m9"}`, auth: str("")}, 401, "bearer token"},
		"create without token": {request{method: "POST", path: "/v1/bindings", body: shipped(nil),
			auth: str("Bearer nope")}, 401, "bearer token"},
		"unknown route without token": {request{method: "GET", path: "/v1/secret", auth: str("")}, 401, "bearer token"},

		// 400: bodies and parameters the API cannot read.
		"malformed json":      {request{method: "POST", path: "/v1/bindings", body: `{"merchant": "m1",`}, 400, "malformed JSON"},
		"not an object":       {request{method: "POST", path: "/v1/bindings", body: `["m1"]`}, 400, "want a JSON object"},
		"unknown field":       {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["colour"] = "red" })}, 400, `unknown field "colour"`},
		"two objects":         {request{method: "POST", path: "/v1/merchants", body: `{"id":"m9"} {"id":"m8"}`}, 400, "exactly one JSON object"},
		"wrong type":          {request{method: "POST", path: "/v1/numbers", body: `{"numbers":"17000000003"}`}, 400, `field "numbers": want an array of strings`},
		"number as id":        {request{method: "POST", path: "/v1/merchants", body: `{"id":9}`}, 400, `field "id": want a string`},
		"empty body":          {request{method: "POST", path: "/v1/merchants", body: ""}, 400, "want a JSON object"},
		"renew unknown field": {request{method: "POST", path: "/v1/bindings/" + active + "/renew", body: `{"days":3}`}, 400, `unknown field "days"`},
		"bad month":           {request{method: "GET", path: "/v1/bills/m1/2026-13"}, 400, "YYYY-MM"},
		"month backwards":     {request{method: "GET", path: "/v1/bills/m1/11-2026"}, 400, "YYYY-MM"},
		"bad from":            {request{method: "GET", path: "/v1/cdrs?from=yesterday"}, 400, "from: invalid time"},
		"bad to":              {request{method: "GET", path: "/v1/cdrs?to=2026-11-31"}, 400, "to: invalid time"},
		"mistyped filter":     {request{method: "GET", path: "/v1/bindings?merchnt=m1"}, 400, `unknown query parameter "merchnt"`},
		"query on get":        {request{method: "GET", path: "/v1/bindings/" + active + "?consignee=1"}, 400, "takes none"},

		// 413 and 415.
		"too large":       {request{method: "POST", path: "/v1/merchants", body: big}, 413, "larger than 1 MiB"},
		"text/plain body": {request{method: "POST", path: "/v1/merchants", body: `{"id":"m9"}`, contentType: str("text/plain")}, 415, "application/json"},
		"form body":       {request{method: "POST", path: "/v1/merchants", body: `{"id":"m9"}`, contentType: str("application/x-www-form-urlencoded")}, 415, "application/json"},
		"no content type": {request{method: "POST", path: "/v1/merchants", body: `{"id":"m9"}`, contentType: str("")}, 415, "application/json"},

		// 404.
		"unknown binding":        {request{method: "GET", path: "/v1/bindings/b_0000000000000000"}, 404, "not found"},
		"release unknown":        {request{method: "DELETE", path: "/v1/bindings/b_0000000000000000"}, 404, "not found"},
		"renew unknown":          {request{method: "POST", path: "/v1/bindings/b_0000000000000000/renew"}, 404, "not found"},
		"account of nobody":      {request{method: "POST", path: "/v1/merchants/m9/accounts", body: `{"user":"bob","password":"long enough"}`}, 404, "merchant m9: not found"},
		"binding for nobody":     {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["merchant"] = "m9" })}, 404, "merchant m9: not found"},
		"bill of nobody":         {request{method: "GET", path: "/v1/bills/m9/2026-11"}, 404, "merchant m9: not found"},
		"unknown route":          {request{method: "GET", path: "/v1/secret"}, 404, "not found"},
		"cdrs of nobody":         {request{method: "GET", path: "/v1/cdrs?merchant=nosuch"}, 404, "merchant nosuch: not found"},
		"cdr csv of nobody":      {request{method: "GET", path: "/v1/cdrs?merchant=nosuch", accept: "text/csv"}, 404, "merchant nosuch: not found"},
		"bindings of nobody":     {request{method: "GET", path: "/v1/bindings?merchant=nosuch"}, 404, "merchant nosuch: not found"},
		"order of nobody":        {request{method: "GET", path: "/v1/bindings?merchant=nosuch&order=o-1"}, 404, "merchant nosuch: not found"},
		"renew of no id":         {request{method: "POST", path: "/v1/bindings//renew"}, 404, "not found"},
		"release of no id":       {request{method: "DELETE", path: "/v1/bindings/"}, 404, "not found"},
		"leading double slash":   {request{method: "GET", path: "//v1/numbers"}, 404, "not found"},
		"inner double slash":     {request{method: "GET", path: "/v1//numbers"}, 404, "not found"},
		"dot-dot segment":        {request{method: "GET", path: "/v1/merchants/../numbers"}, 404, "not found"},
		"dot segment":            {request{method: "POST", path: "/v1/./numbers", body: `{"numbers":["17000000003"]}`}, 404, "not found"},
		"trailing slash":         {request{method: "GET", path: "/v1/numbers/"}, 404, "not found"},
		"probe trailing slash":   {request{method: "GET", path: "/healthz/", auth: str("")}, 404, "not found"},
		"unknown top-level path": {request{method: "GET", path: "/admin", auth: str("")}, 404, "not found"},

		// 405.
		"wrong method": {request{method: "PUT", path: "/v1/bindings", body: `{}`}, 405, "method not allowed"},

		// 409.
		"duplicate merchant": {request{method: "POST", path: "/v1/merchants", body: `{"id":"m1"}`}, 409, "merchant m1: already exists"},
		"duplicate account":  {request{method: "POST", path: "/v1/merchants/m1/accounts", body: `{"user":"alice","password":"another one"}`}, 409, "account alice: already exists"},
		"duplicate number":   {request{method: "POST", path: "/v1/numbers", body: `{"numbers":["17000000003","8617000000001"]}`}, 409, "number 17000000001: already exists"},
		"number given twice": {request{method: "POST", path: "/v1/numbers", body: `{"numbers":["17000000003","17000000003"]}`}, 409, "already exists"},
		"duplicate order":    {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["order"] = "o-1" })}, 409, "active binding for order o-1: already exists"},
		"release ended":      {request{method: "DELETE", path: "/v1/bindings/" + ended}, 409, "already ended"},

		// 422: well formed, refused by the rules.
		"unpaid":          {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["order_status"] = "unpaid" })}, 422, "order not shipped: status unpaid"},
		"paid":            {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["order_status"] = "paid" })}, 422, "order not shipped: status paid"},
		"no status":       {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { delete(b, "order_status") })}, 422, "invalid order status: none given; want shipped, delivered or after_sale"},
		"unknown status":  {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["order_status"] = "shipd" })}, 422, `invalid order status "shipd": unknown; want shipped, delivered or after_sale`},
		"host consignee":  {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["consignee"] = "+8617000000001" })}, 422, "invalid consignee: it is one of vnum's own host numbers"},
		"not a number":    {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["consignee"] = "23800138000" })}, 422, "invalid consignee: want an 11-digit mobile number"},
		"local from 1":    {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["consignee"] = "01012345678" })}, 422, "invalid consignee: a +86 number must be a mobile number"},
		"bad consignee":   {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["consignee"] = "555" })}, 422, "invalid consignee"},
		"landline prefix": {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["consignee"] = "12912345678" })}, 422, "not a mobile number"},
		"no order":        {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["order"] = "" })}, 422, "invalid order"},
		"bad ttl":         {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["ttl"] = "forever" })}, 422, "invalid ttl"},
		"negative ttl":    {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["ttl"] = "-1h" })}, 422, "invalid ttl"},
		"renew bad ttl":   {request{method: "POST", path: "/v1/bindings/" + active + "/renew", body: `{"ttl":"0s"}`}, 422, "invalid ttl"},
		"ttl of 1ns":      {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["ttl"] = "1ns" })}, 422, "invalid ttl 1ns: must lie between 1h and 8760h"},
		"ttl under 1h":    {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["ttl"] = "59m59s" })}, 422, "must lie between 1h and 8760h"},
		"ttl of 2000000h": {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["ttl"] = "2000000h" })}, 422, "invalid ttl 2000000h: must lie between 1h and 8760h"},
		"ttl of 9000h":    {request{method: "POST", path: "/v1/bindings", body: shipped(func(b map[string]any) { b["ttl"] = "9000h" })}, 422, "invalid ttl 9000h: must lie between 1h and 8760h"},
		"renew ttl 1ns":   {request{method: "POST", path: "/v1/bindings/" + active + "/renew", body: `{"ttl":"1ns"}`}, 422, "must lie between 1h and 8760h"},
		"bad number":      {request{method: "POST", path: "/v1/numbers", body: `{"numbers":["17000000003","123"]}`}, 422, "invalid host number"},
		"no numbers":      {request{method: "POST", path: "/v1/numbers", body: `{"numbers":[]}`}, 422, "no numbers"},
		"bad merchant id": {request{method: "POST", path: "/v1/merchants", body: `{"id":"m 9"}`}, 422, "invalid merchant id"},
		"short password":  {request{method: "POST", path: "/v1/merchants/m1/accounts", body: `{"user":"bob","password":"short"}`}, 422, "at least 8"},
		"bad user":        {request{method: "POST", path: "/v1/merchants/m1/accounts", body: `{"user":"bob smith","password":"long enough"}`}, 422, "invalid account user"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := h.snapshot()
			r := h.do(tc.req)
			require.Equal(t, tc.status, r.status, "%s", r.body)
			require.Contains(t, r.object(t)["error"], tc.msg)
			require.Equal(t, before, h.snapshot(), "a failed request changed the store")
			switch tc.status {
			case http.StatusUnauthorized:
				require.Equal(t, `Bearer realm="vnum"`, r.header.Get("WWW-Authenticate"))
			case http.StatusMethodNotAllowed:
				require.Contains(t, r.header.Get("Allow"), "GET")
				require.Contains(t, r.header.Get("Allow"), "POST")
			}
		})
	}

	// The refusals left the active binding alone, and its order still
	// cannot have a second one.
	r = h.do(request{method: "GET", path: "/v1/bindings/" + active})
	require.Equal(t, "active", r.object(t)["status"])
}

func TestPoolExhausted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.do(request{method: "POST", path: "/v1/merchants", body: `{"id":"m1"}`})
	require.Equal(t, http.StatusCreated, r.status)
	before := h.snapshot()
	r = h.do(request{method: "POST", path: "/v1/bindings", body: map[string]string{
		"merchant": "m1", "order": "o-1", "consignee": consignee, "order_status": "shipped"}})
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Contains(t, r.object(t)["error"], "pool exhausted")
	require.Equal(t, before, h.snapshot())
	require.Contains(t, h.log.String(), "add host numbers", "the operator is told")
}

// TestNoTokenLoopbackOnly: without admin.token the API answers only
// requests addressed to a loopback name, so a web page cannot reach it by
// DNS rebinding.
func TestNoTokenLoopbackOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *api.Options) { o.Token = "" })
	for _, host := range []string{"", "localhost:8080", "LOCALHOST", "127.0.0.1:8080", "[::1]:8080", "127.1.2.3"} {
		r := h.do(request{method: "GET", path: "/v1/numbers", host: host})
		require.Equal(t, http.StatusOK, r.status, "Host %q: %s", host, r.body)
	}
	for _, host := range []string{"evil.example", "evil.example:8080", "10.0.0.1:8080", "localhost.evil.example"} {
		before := h.snapshot()
		r := h.do(request{method: "POST", path: "/v1/merchants", body: `{"id":"m9"}`, host: host})
		require.Equal(t, http.StatusForbidden, r.status, "Host %q", host)
		require.Contains(t, r.object(t)["error"], "admin.token is not set")
		require.Equal(t, before, h.snapshot())
	}
	// Probes stay open to any Host: load balancers use their own names.
	r := h.do(request{method: "GET", path: "/healthz", host: "lb.internal"})
	require.Equal(t, http.StatusOK, r.status)
}

// TestConcurrentRequests creates bindings from many clients at once while
// others read: every create succeeds with its own (X, E), and the race
// detector watches the server.
func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	const n = 16
	type result struct {
		status int
		body   map[string]any
		err    error
	}
	send := func(method, path, body string) result {
		req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
		if err != nil {
			return result{err: err}
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		res, err := h.srv.Client().Do(req)
		if err != nil {
			return result{err: err}
		}
		defer res.Body.Close()
		var m map[string]any
		if method == "POST" {
			err = json.NewDecoder(res.Body).Decode(&m)
		} else {
			_, err = io.Copy(io.Discard, res.Body)
		}
		return result{status: res.StatusCode, body: m, err: err}
	}
	results := make(chan result, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results <- send("POST", "/v1/bindings", fmt.Sprintf(
				`{"merchant":"m1","order":"c-%d","consignee":"%s","order_status":"shipped"}`, i, consignee))
		})
		wg.Go(func() { results <- send("GET", "/v1/bindings?merchant=m1", "") })
	}
	wg.Wait()
	close(results)
	slots := map[string]bool{}
	for r := range results {
		require.NoError(t, r.err)
		if r.body == nil {
			require.Equal(t, http.StatusOK, r.status)
			continue
		}
		require.Equal(t, http.StatusCreated, r.status, "%v", r.body)
		slot := r.body["host"].(string) + "," + r.body["extension"].(string)
		require.False(t, slots[slot], "two bindings on %s", slot)
		slots[slot] = true
	}
	require.Len(t, slots, n)
}
