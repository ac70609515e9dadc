package binding

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)

func shipped(order string) CreateRequest {
	return CreateRequest{Merchant: "m1", Order: order, Consignee: "13800138000", OrderStatus: "shipped"}
}

func countBindings(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	require.NoError(t, s.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM bindings`).Scan(&n))
	return n
}

func TestCreateBinding(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()

		b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		require.Regexp(t, `^b_[0-9a-f]{16}$`, b.ID)
		require.Equal(t, "17000000001", b.Host)
		require.Regexp(t, `^[0-9]{4}$`, b.Extension)
		require.Equal(t, "+8613800138000", b.Consignee)
		require.Equal(t, t0.Add(720*time.Hour), b.ExpiresAt)
		require.Equal(t, "17000000001转"+b.Extension, b.Display())
		require.Equal(t, "17000000001,"+b.Extension, b.Dial())

		got, err := s.GetBinding(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, b.Consignee, got.Consignee)
		require.Equal(t, b.Extension, got.Extension)
		_, err = s.GetBinding(ctx, "b_missing")
		require.ErrorIs(t, err, ErrNotFound)

		// JSON: the agreed field names, never the consignee.
		raw, err := json.Marshal(got)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		for _, k := range []string{"id", "merchant", "order", "host", "extension", "display", "dial",
			"order_status", "created_at", "expires_at", "released_at", "status"} {
			require.Contains(t, m, k)
		}
		require.NotContains(t, string(raw), "13800138000")
		require.Nil(t, m["released_at"])
		admin, err := json.Marshal(AdminView{*got})
		require.NoError(t, err)
		require.Contains(t, string(admin), `"consignee":"+8613800138000"`)

		// A custom TTL.
		req := shipped("o-2")
		req.TTL = time.Hour
		b2, err := s.CreateBinding(ctx, req, t0)
		require.NoError(t, err)
		require.Equal(t, t0.Add(time.Hour), b2.ExpiresAt)
		require.GreaterOrEqual(t, hamming(b.Extension, b2.Extension), 2)

		list, err := s.ListBindings(ctx, "m1", "")
		require.NoError(t, err)
		require.Len(t, list, 2)
		list, err = s.ListBindings(ctx, "", "o-2")
		require.NoError(t, err)
		require.Len(t, list, 1)
		list, err = s.ListBindings(ctx, "m2", "")
		require.NoError(t, err)
		require.Empty(t, list)
	})
}

func TestCreateBindingRefusals(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		_, err := s.CreateBinding(ctx, shipped("dup"), t0)
		require.NoError(t, err)

		tests := map[string]struct {
			mutate func(*CreateRequest)
			want   error
			msg    string
		}{
			"unpaid":           {func(r *CreateRequest) { r.OrderStatus = "unpaid" }, ErrNotShipped, "order not shipped: status unpaid"},
			"paid":             {func(r *CreateRequest) { r.OrderStatus = "paid" }, ErrNotShipped, ""},
			"no status":        {func(r *CreateRequest) { r.OrderStatus = "" }, ErrInvalid, "order status: none given; want shipped, delivered or after_sale"},
			"unknown status":   {func(r *CreateRequest) { r.OrderStatus = "shipd" }, ErrInvalid, `order status "shipd": unknown; want shipped, delivered or after_sale`},
			"closed order":     {func(r *CreateRequest) { r.OrderStatus = "closed" }, ErrInvalid, "a closed order gets no binding"},
			"cancelled order":  {func(r *CreateRequest) { r.OrderStatus = "cancelled" }, ErrNotShipped, "order not shipped: status cancelled"},
			"host number":      {func(r *CreateRequest) { r.Consignee = "17000000001" }, ErrInvalid, "one of vnum's own host numbers"},
			"host number +86":  {func(r *CreateRequest) { r.Consignee = "+86 170 0000 0001" }, ErrInvalid, "one of vnum's own host numbers"},
			"host number 86":   {func(r *CreateRequest) { r.Consignee = "8617000000001" }, ErrInvalid, "one of vnum's own host numbers"},
			"ttl over a year":  {func(r *CreateRequest) { r.TTL = 9000 * time.Hour }, ErrInvalid, "ttl 9000h: must lie between 1h and 8760h"},
			"bad consignee":    {func(r *CreateRequest) { r.Consignee = "12345" }, ErrInvalid, "consignee"},
			"unknown merchant": {func(r *CreateRequest) { r.Merchant = "m9" }, ErrNotFound, ""},
			"bad merchant":     {func(r *CreateRequest) { r.Merchant = "m 9" }, ErrInvalid, ""},
			"empty order":      {func(r *CreateRequest) { r.Order = "" }, ErrInvalid, ""},
			"negative ttl":     {func(r *CreateRequest) { r.TTL = -time.Hour }, ErrInvalid, ""},
			"duplicate order":  {func(r *CreateRequest) { r.Order = "dup" }, ErrExists, ""},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				req := shipped("new-" + name)
				tc.mutate(&req)
				_, err := s.CreateBinding(ctx, req, t0)
				require.ErrorIs(t, err, tc.want)
				if tc.msg != "" {
					require.ErrorContains(t, err, tc.msg)
				}
				require.Equal(t, 1, countBindings(t, s), "nothing stored")
			})
		}
		// The same order of another merchant is fine.
		req := shipped("dup")
		req.Merchant = "m2"
		_, err = s.CreateBinding(ctx, req, t0)
		require.NoError(t, err)
		// "delivered" and "after_sale" count as shipped.
		for _, st := range []string{"delivered", "after_sale"} {
			req := shipped("st-" + st)
			req.OrderStatus = st
			_, err := s.CreateBinding(ctx, req, t0)
			require.NoError(t, err)
		}
	})
}

func TestPoolExhausted(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t, WithPolicy(Policy{TTL: time.Hour, Quarantine: 24 * time.Hour, ExtensionDigits: 3}))
		seed(t, s, "17000000001")
		ctx := context.Background()
		_, err := s.CreateBinding(ctx, shipped("none-yet"), t0)
		require.NoError(t, err)
		// A 3-digit distance-2 code on one X has 100 words.
		exts := map[string]bool{}
		for i := range 99 {
			b, err := s.CreateBinding(ctx, shipped(fmt.Sprintf("o-%d", i)), t0)
			require.NoError(t, err)
			exts[b.Extension] = true
		}
		_, err = s.CreateBinding(ctx, shipped("one-too-many"), t0)
		require.ErrorIs(t, err, ErrPoolExhausted)
		require.EqualError(t, err, "pool exhausted")

		// Expired bindings stay out of use through the quarantine…
		_, err = s.CreateBinding(ctx, shipped("later"), t0.Add(2*time.Hour))
		require.ErrorIs(t, err, ErrPoolExhausted)
		// …and come back after it.
		_, err = s.CreateBinding(ctx, shipped("much-later"), t0.Add(26*time.Hour))
		require.NoError(t, err)

		// Another X gives room again.
		require.NoError(t, s.AddNumbers(ctx, "17000000002"))
		b, err := s.CreateBinding(ctx, shipped("o-x2"), t0.Add(26*time.Hour))
		require.NoError(t, err)
		require.Equal(t, "17000000002", b.Host)
	})
}

func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		const n = 20
		var wg sync.WaitGroup
		results := make([]*Binding, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				results[i], errs[i] = s.CreateBinding(ctx, shipped(fmt.Sprintf("c-%d", i)), t0)
			})
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
		}
		for i := range n {
			for j := i + 1; j < n; j++ {
				require.GreaterOrEqual(t, hamming(results[i].Extension, results[j].Extension), 2,
					"%s vs %s", results[i].Extension, results[j].Extension)
			}
		}
		require.Equal(t, n, countBindings(t, s))
	})
}

func TestHammingProperty(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t, WithPolicy(Policy{TTL: time.Hour, Quarantine: time.Hour, ExtensionDigits: 4}))
		seed(t, s, "17000000001", "17000000002")
		ctx := context.Background()
		byHost := map[string][]string{}
		for i := range 300 {
			b, err := s.CreateBinding(ctx, shipped(fmt.Sprintf("h-%d", i)), t0)
			require.NoError(t, err)
			byHost[b.Host] = append(byHost[b.Host], b.Extension)
		}
		require.Len(t, byHost, 2, "load spreads over the pool")
		for host, exts := range byHost {
			for i := range exts {
				for j := i + 1; j < len(exts); j++ {
					require.GreaterOrEqual(t, hamming(exts[i], exts[j]), 2, "%s: %s vs %s", host, exts[i], exts[j])
				}
			}
		}
	})
}

func TestPickExtensionRespectsForeignRows(t *testing.T) {
	t.Parallel()
	// Rows written under another check digit still keep distance 2.
	used := []string{"1234", "5678", "123"}
	for range 200 {
		e, ok, err := pickExtension(used, 4, 7)
		require.NoError(t, err)
		require.True(t, ok)
		for _, u := range used[:2] {
			require.GreaterOrEqual(t, hamming(e, u), 2)
		}
	}
	require.Equal(t, 2, hamming("1234", "1243"))
	require.Equal(t, 5, hamming("1234", "12345"))
	require.Equal(t, "0000", codeword(0, 4, 0))
	require.Equal(t, "1239", codeword(123, 4, 5))
}

func TestResolve(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		now := t0.Add(time.Minute)

		got, err := s.Resolve(ctx, "+8617000000001", b.Extension, "m1", now)
		require.NoError(t, err)
		require.Equal(t, b.ID, got.ID)
		require.Equal(t, "+8613800138000", got.Consignee)
		got, err = s.Resolve(ctx, b.Host, b.Extension, "", now) // trunk caller
		require.NoError(t, err)
		require.Equal(t, b.ID, got.ID)

		wrong := codeword(0, 4, 0)
		if wrong == b.Extension {
			wrong = codeword(1, 4, 0)
		}
		for name, tc := range map[string]struct{ x, ext, merchant string }{
			"foreign":      {b.Host, b.Extension, "m2"},
			"wrong ext":    {b.Host, wrong, "m1"},
			"unknown host": {"17000000009", b.Extension, "m1"},
			"bad ext":      {b.Host, "12a4", ""},
			"bad host":     {"x", b.Extension, ""},
		} {
			_, err := s.Resolve(ctx, tc.x, tc.ext, tc.merchant, now)
			require.ErrorIs(t, err, ErrNoBinding, name)
		}

		// Expired: the expired answer during the quarantine, then nothing.
		_, err = s.Resolve(ctx, b.Host, b.Extension, "", b.ExpiresAt)
		require.ErrorIs(t, err, ErrExpired)
		_, err = s.Resolve(ctx, b.Host, b.Extension, "", b.ExpiresAt.Add(2160*time.Hour))
		require.ErrorIs(t, err, ErrNoBinding)

		// Released: expired at once; a second release is refused.
		rel, err := s.Release(ctx, b.ID, now)
		require.NoError(t, err)
		require.Equal(t, StatusReleased, rel.Status)
		_, err = s.Resolve(ctx, b.Host, b.Extension, "m1", now.Add(time.Second))
		require.ErrorIs(t, err, ErrExpired)
		_, err = s.Resolve(ctx, b.Host, b.Extension, "m2", now.Add(time.Second))
		require.ErrorIs(t, err, ErrNoBinding, "no oracle for a foreign merchant")
		_, err = s.Release(ctx, b.ID, now)
		require.ErrorIs(t, err, ErrEnded)
		_, err = s.Release(ctx, "b_nope", now)
		require.ErrorIs(t, err, ErrNotFound)

		// The order is free again, and gets another (X, E).
		b2, err := s.CreateBinding(ctx, shipped("o-1"), now.Add(time.Second))
		require.NoError(t, err)
		require.NotEqual(t, b.Extension, b2.Extension)
	})
}

func TestRenew(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		nb, err := s.Renew(ctx, b.ID, 0, t0.Add(time.Hour))
		require.NoError(t, err)
		require.NotEqual(t, b.ID, nb.ID)
		require.NotEqual(t, b.Extension, nb.Extension)
		require.Equal(t, "o-1", nb.Order)
		old, err := s.GetBinding(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, t0.Add(time.Hour), old.ReleasedAt)

		// An expired binding's order can be renewed too.
		later := nb.ExpiresAt.Add(time.Hour)
		nb2, err := s.Renew(ctx, nb.ID, time.Hour, later)
		require.NoError(t, err)
		require.Equal(t, later.Add(time.Hour), nb2.ExpiresAt)
		_, err = s.Renew(ctx, "b_nope", 0, later)
		require.ErrorIs(t, err, ErrNotFound)
	})
}

// TestCreateTTLBounds pins README "Bindings": a ttl, per request or in the policy,
// lies between 1h and 8760h; outside that nothing is stored.
func TestCreateTTLBounds(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		tests := map[string]struct {
			request, policy time.Duration
			ok              bool
		}{
			"1ns":              {request: time.Nanosecond},
			"59m59s":           {request: time.Hour - time.Second},
			"1h":               {request: time.Hour, ok: true},
			"8760h":            {request: 8760 * time.Hour, ok: true},
			"8760h and 1ns":    {request: 8760*time.Hour + 1},
			"2000000h":         {request: 2000000 * time.Hour},
			"negative":         {request: -time.Hour},
			"policy of 1ns":    {policy: time.Nanosecond},
			"policy of 9000h":  {policy: 9000 * time.Hour},
			"policy, in range": {policy: 48 * time.Hour, ok: true},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				p := DefaultPolicy()
				if tc.policy != 0 {
					p.TTL = tc.policy
				}
				s, _ := be.open(t, WithPolicy(p))
				seed(t, s, "17000000001")
				req := shipped("o")
				req.TTL = tc.request
				now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
				b, err := s.CreateBinding(ctx, req, now)
				if tc.ok {
					require.NoError(t, err)
					require.Equal(t, max(tc.request, tc.policy), b.ExpiresAt.Sub(now))
					return
				}
				require.ErrorIs(t, err, ErrInvalid)
				require.ErrorContains(t, err, "must lie between 1h and 8760h")
				bs, err := s.ListBindings(ctx, "", "")
				require.NoError(t, err)
				require.Empty(t, bs, "a refused create stored a binding")
			})
		}
	})
}

// hamming returns the number of positions where a and b differ; strings of
// different lengths count as far apart.
func hamming(a, b string) int {
	if len(a) != len(b) {
		return max(len(a), len(b))
	}
	d := 0
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] {
			d++
		}
	}
	return d
}
