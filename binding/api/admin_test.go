package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
)

// TestDayTwoAdministration lists merchants and accounts, changes a
// password, removes an account and host numbers through the API. No answer
// carries a password, a digest or a consignee number (the harness scans
// every body for the consignee).
func TestDayTwoAdministration(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	seedAPI(t, h)
	r := h.do(request{method: "POST", path: "/v1/merchants", body: map[string]string{"id": "m2", "name": "Shop Two"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = h.do(request{method: "POST", path: "/v1/merchants/m2/accounts",
		body: map[string]string{"user": "carol", "password": "correct horse"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	b := createBinding(t, h, "o-1", consignee)

	var bodies strings.Builder
	do := func(req request, status int) response {
		t.Helper()
		r := h.do(req)
		require.Equal(t, status, r.status, "%s %s: %s", req.method, req.path, r.body)
		bodies.Write(r.body)
		return r
	}

	// Merchants, with their counts.
	var ms []map[string]any
	do(request{method: "GET", path: "/v1/merchants"}, http.StatusOK).decode(t, &ms)
	require.Len(t, ms, 2)
	require.Equal(t, "m1", ms[0]["id"])
	require.Equal(t, "Shop One", ms[0]["name"])
	require.EqualValues(t, 1, ms[0]["accounts"])
	require.EqualValues(t, 1, ms[0]["active_bindings"])
	require.Equal(t, "m2", ms[1]["id"])
	require.EqualValues(t, 0, ms[1]["active_bindings"])
	m := do(request{method: "GET", path: "/v1/merchants/m2"}, http.StatusOK).object(t)
	require.Equal(t, ms[1], m)

	// Accounts, without secrets.
	var as []map[string]any
	do(request{method: "GET", path: "/v1/merchants/m1/accounts"}, http.StatusOK).decode(t, &as)
	require.Len(t, as, 1)
	require.Equal(t, "alice", as[0]["user"])
	require.Equal(t, "m1", as[0]["merchant"])
	require.Equal(t, false, as[0]["registered"])

	// Account names are shared by all merchants: the refusal says whose.
	r = do(request{method: "POST", path: "/v1/merchants/m2/accounts",
		body: map[string]string{"user": "alice", "password": "another one"}}, http.StatusConflict)
	require.Equal(t, "account alice: already exists: merchant m1 has it, and SIP user names are shared by all merchants; choose another",
		r.object(t)["error"])

	// A new password: digests only, and the old one no longer matches.
	r = do(request{method: "PUT", path: "/v1/merchants/m1/accounts/alice/password",
		body: map[string]string{"password": "battery staple"}}, http.StatusNoContent)
	require.Empty(t, r.body)
	acct, err := h.store.Account(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, binding.HA1("MD5", "alice", binding.Realm, "battery staple"), acct.HA1MD5)
	require.Equal(t, binding.HA1("SHA-256", "alice", binding.Realm, "battery staple"), acct.HA1SHA256)

	// A host number with an active binding stays; a free one goes.
	host := b["host"].(string)
	other := map[bool]string{true: "17000000002", false: "17000000001"}[host == "17000000001"]
	r = do(request{method: "DELETE", path: "/v1/numbers/" + host}, http.StatusConflict)
	require.Contains(t, r.object(t)["error"], "number "+host+": still in use: 1 active binding(s) and 0 in quarantine; as they stand it is free from ")
	do(request{method: "DELETE", path: "/v1/numbers/%2B86" + other}, http.StatusNoContent)
	var nums []binding.Number
	do(request{method: "GET", path: "/v1/numbers"}, http.StatusOK).decode(t, &nums)
	require.Len(t, nums, 1)
	require.Equal(t, host, nums[0].Host)
	do(request{method: "DELETE", path: "/v1/numbers/" + other}, http.StatusNotFound)

	// Removing the account.
	do(request{method: "DELETE", path: "/v1/merchants/m1/accounts/alice"}, http.StatusNoContent)
	_, err = h.store.Account(ctx, "alice")
	require.ErrorIs(t, err, binding.ErrNotFound)
	do(request{method: "GET", path: "/v1/merchants/m1/accounts"}, http.StatusOK).decode(t, &as)
	require.Empty(t, as)
	m = do(request{method: "GET", path: "/v1/merchants/m1"}, http.StatusOK).object(t)
	require.EqualValues(t, 0, m["accounts"])

	out := bodies.String()
	for _, secret := range []string{"horse", "battery", "staple", "ha1", acct.HA1MD5, acct.HA1SHA256} {
		require.NotContains(t, out, secret)
	}
}

// TestDayTwoRefusals: each refusal of the day-two endpoints has its status
// and one clear message, and changes nothing.
func TestDayTwoRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	r := h.do(request{method: "POST", path: "/v1/merchants", body: map[string]string{"id": "m2"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = h.do(request{method: "POST", path: "/v1/merchants/m2/accounts",
		body: map[string]string{"user": "carol", "password": "correct horse"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	createBinding(t, h, "o-1", consignee)
	createBinding(t, h, "o-2", otherConsignee)
	pw := `{"password":"long enough"}`

	tests := map[string]struct {
		req    request
		status int
		msg    string
	}{
		"unknown merchant":           {request{method: "GET", path: "/v1/merchants/m9"}, 404, "merchant m9: not found"},
		"accounts of nobody":         {request{method: "GET", path: "/v1/merchants/m9/accounts"}, 404, "merchant m9: not found"},
		"password of nobody":         {request{method: "PUT", path: "/v1/merchants/m9/accounts/alice/password", body: pw}, 404, "merchant m9: not found"},
		"password of no account":     {request{method: "PUT", path: "/v1/merchants/m1/accounts/bob/password", body: pw}, 404, "account bob of merchant m1: not found"},
		"password of another's":      {request{method: "PUT", path: "/v1/merchants/m1/accounts/carol/password", body: pw}, 404, "account carol of merchant m1: not found"},
		"short password":             {request{method: "PUT", path: "/v1/merchants/m1/accounts/alice/password", body: `{"password":"short"}`}, 422, "invalid password: want at least 8 characters"},
		"no password":                {request{method: "PUT", path: "/v1/merchants/m1/accounts/alice/password", body: `{}`}, 422, "at least 8"},
		"password, unknown field":    {request{method: "PUT", path: "/v1/merchants/m1/accounts/alice/password", body: `{"password":"long enough","user":"x"}`}, 400, `unknown field "user"`},
		"password, no body":          {request{method: "PUT", path: "/v1/merchants/m1/accounts/alice/password"}, 400, "want a JSON object"},
		"password, not JSON":         {request{method: "PUT", path: "/v1/merchants/m1/accounts/alice/password", body: pw, contentType: str("text/plain")}, 415, "application/json"},
		"remove of nobody":           {request{method: "DELETE", path: "/v1/merchants/m9/accounts/alice"}, 404, "merchant m9: not found"},
		"remove another's":           {request{method: "DELETE", path: "/v1/merchants/m1/accounts/carol"}, 404, "account carol of merchant m1: not found"},
		"remove unknown number":      {request{method: "DELETE", path: "/v1/numbers/17000000009"}, 404, "number 17000000009: not found"},
		"remove bad number":          {request{method: "DELETE", path: "/v1/numbers/123"}, 422, "invalid host number"},
		"remove number in use":       {request{method: "DELETE", path: "/v1/numbers/17000000001"}, 409, "number 17000000001: still in use: 1 active binding(s)"},
		"query on list":              {request{method: "GET", path: "/v1/merchants?merchant=m1"}, 400, "takes none"},
		"query on accounts":          {request{method: "GET", path: "/v1/merchants/m1/accounts?user=alice"}, 400, "takes none"},
		"no token":                   {request{method: "GET", path: "/v1/merchants", auth: str("")}, 401, "bearer token"},
		"no token, delete":           {request{method: "DELETE", path: "/v1/numbers/17000000002", auth: str("")}, 401, "bearer token"},
		"wrong method on an account": {request{method: "GET", path: "/v1/merchants/m1/accounts/alice"}, 405, "method not allowed"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := h.snapshot()
			r := h.do(tc.req)
			require.Equal(t, tc.status, r.status, "%s", r.body)
			require.Contains(t, r.object(t)["error"], tc.msg)
			require.Equal(t, before, h.snapshot(), "a failed request changed the store")
		})
	}
}
