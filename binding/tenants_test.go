package binding

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// requireNoSecrets fails when v, as JSON, carries a digest or the test
// consignee: operators' listings show neither.
func requireNoSecrets(t *testing.T, v any, users ...string) {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	out := string(raw)
	require.NotContains(t, out, "ha1")
	require.NotContains(t, out, "13800138000")
	for _, u := range users {
		require.NotContains(t, out, HA1("MD5", u, Realm, "correct horse"))
		require.NotContains(t, out, HA1("SHA-256", u, Realm, "correct horse"))
	}
}

func TestListMerchantsAndAccounts(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		c := newClock(t0)
		s, _ := be.open(t, c.option())
		seed(t, s, "17000000001")
		ctx := context.Background()
		require.NoError(t, s.AddMerchant(ctx, "M0", "Upper case sorts first"))
		for _, a := range [][2]string{{"m1", "bob"}, {"m1", "alice"}, {"m2", "carol"}} {
			require.NoError(t, s.AddAccount(ctx, a[0], a[1], "correct horse"))
		}
		_, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		_, err = s.CreateBinding(ctx, shipped("o-2"), t0)
		require.NoError(t, err)
		_, err = s.Release(ctx, mustBinding(t, s, "m1", "o-2").ID, t0.Add(time.Minute))
		require.NoError(t, err)
		c.set(t0.Add(2 * time.Minute))

		ms, err := s.ListMerchants(ctx)
		require.NoError(t, err)
		require.Len(t, ms, 3)
		require.Equal(t, []string{"M0", "m1", "m2"}, []string{ms[0].ID, ms[1].ID, ms[2].ID}, "byte order")
		require.Equal(t, MerchantSummary{Merchant: Merchant{ID: "m1", Name: "Shop One", CreatedAt: t0},
			Accounts: 2, ActiveBindings: 1}, ms[1], "the released binding is not active")
		require.Equal(t, 1, ms[2].Accounts)
		require.Zero(t, ms[2].ActiveBindings)
		requireNoSecrets(t, ms, "alice", "bob", "carol")

		m, err := s.MerchantSummary(ctx, "m1")
		require.NoError(t, err)
		require.Equal(t, ms[1], m)
		raw, err := json.Marshal(m)
		require.NoError(t, err)
		require.JSONEq(t, `{"id":"m1","name":"Shop One","created_at":"2026-11-01T08:00:00Z","accounts":2,"active_bindings":1}`,
			string(raw))
		c.set(t0.Add(720 * time.Hour))
		m, err = s.MerchantSummary(ctx, "m1")
		require.NoError(t, err)
		require.Zero(t, m.ActiveBindings, "expired by the store's clock")
		_, err = s.MerchantSummary(ctx, "m9")
		require.ErrorIs(t, err, ErrNotFound)
		require.ErrorContains(t, err, "merchant m9")

		as, err := s.ListAccounts(ctx, "m1")
		require.NoError(t, err)
		require.Equal(t, []AccountInfo{{User: "alice", Merchant: "m1", CreatedAt: t0}, {User: "bob", Merchant: "m1", CreatedAt: t0}}, as)
		requireNoSecrets(t, as, "alice", "bob")
		require.NoError(t, s.SaveRegistration(ctx, callrec.Registration{User: "bob", Contact: "sip:bob@127.0.0.1:5070",
			Source: "127.0.0.1:5070", Transport: "udp", Expires: c.now().Add(time.Hour)}))
		as, err = s.ListAccounts(ctx, "m1")
		require.NoError(t, err)
		require.False(t, as[0].Registered)
		require.True(t, as[1].Registered, "bob's softphone registered")
		raw, err = json.Marshal(as[1])
		require.NoError(t, err)
		require.JSONEq(t, `{"user":"bob","merchant":"m1","created_at":"2026-11-01T08:00:00Z","registered":true}`, string(raw))
		c.add(2 * time.Hour)
		as, err = s.ListAccounts(ctx, "m1")
		require.NoError(t, err)
		require.False(t, as[1].Registered, "the registration expired")

		as, err = s.ListAccounts(ctx, "M0")
		require.NoError(t, err)
		require.Empty(t, as)
		_, err = s.ListAccounts(ctx, "m9")
		require.ErrorIs(t, err, ErrNotFound, "an unknown merchant is not an empty list")
	})
}

// mustBinding returns the one binding of a merchant's order.
func mustBinding(t *testing.T, s *Store, merchant, order string) *Binding {
	t.Helper()
	bs, err := s.ListBindings(context.Background(), merchant, order)
	require.NoError(t, err)
	require.Len(t, bs, 1)
	return &bs[0]
}

// TestAccountNamesAreGlobal: SIP digest user names are shared by all
// merchants, and the refusal says who has the name.
func TestAccountNamesAreGlobal(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s)
		ctx := context.Background()
		require.NoError(t, s.AddAccount(ctx, "m1", "alice", "correct horse"))
		err := s.AddAccount(ctx, "m2", "alice", "another one")
		require.ErrorIs(t, err, ErrExists)
		require.EqualError(t, err, "account alice: already exists: merchant m1 has it, and SIP user names are shared by all merchants; choose another")
		err = s.AddAccount(ctx, "m1", "alice", "another one")
		require.ErrorIs(t, err, ErrExists)
		require.EqualError(t, err, "account alice: already exists for merchant m1")
		a, err := s.Account(ctx, "alice")
		require.NoError(t, err)
		require.Equal(t, HA1("MD5", "alice", Realm, "correct horse"), a.HA1MD5, "the refused adds changed nothing")
	})
}

func TestSetPassword(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s)
		ctx := context.Background()
		require.NoError(t, s.AddAccount(ctx, "m1", "alice", "correct horse"))
		require.NoError(t, s.AddAccount(ctx, "m2", "carol", "correct horse"))
		for _, u := range []string{"alice", "carol"} {
			require.NoError(t, s.SaveRegistration(ctx, callrec.Registration{User: u, Contact: "sip:" + u + "@127.0.0.1:5070",
				Source: "127.0.0.1:5070", Transport: "udp", Expires: time.Now().Add(time.Hour)}))
		}

		require.NoError(t, s.SetPassword(ctx, "m1", "alice", "battery staple"))
		a, err := s.Account(ctx, "alice")
		require.NoError(t, err)
		require.Equal(t, HA1("MD5", "alice", Realm, "battery staple"), a.HA1MD5)
		require.Equal(t, HA1("SHA-256", "alice", Realm, "battery staple"), a.HA1SHA256)
		_, ok, err := s.LookupRegistration(ctx, "alice", time.Now())
		require.NoError(t, err)
		require.False(t, ok, "whoever registered with the old password is dropped")
		_, ok, err = s.LookupRegistration(ctx, "carol", time.Now())
		require.NoError(t, err)
		require.True(t, ok, "other logins keep theirs")

		tests := map[string]struct {
			merchant, user, password string
			want                     error
			msg                      string
		}{
			"short password":       {"m1", "alice", "short", ErrInvalid, "invalid password: want at least 8 characters"},
			"unknown merchant":     {"m9", "alice", "long enough", ErrNotFound, "merchant m9: not found"},
			"another's login":      {"m1", "carol", "long enough", ErrNotFound, "account carol of merchant m1: not found"},
			"unknown login":        {"m1", "dave", "long enough", ErrNotFound, "account dave of merchant m1: not found"},
			"unknown both":         {"m9", "dave", "long enough", ErrNotFound, "merchant m9: not found"},
			"empty user":           {"m1", "", "long enough", ErrNotFound, "account  of merchant m1: not found"},
			"empty merchant, user": {"", "", "long enough", ErrNotFound, "merchant : not found"},
		}
		for name, tc := range tests {
			err := s.SetPassword(ctx, tc.merchant, tc.user, tc.password)
			require.ErrorIs(t, err, tc.want, name)
			require.EqualError(t, err, tc.msg, name)
		}
		c, err := s.Account(ctx, "carol")
		require.NoError(t, err)
		require.Equal(t, HA1("MD5", "carol", Realm, "correct horse"), c.HA1MD5, "refused changes changed nothing")
	})
}

func TestRemoveAccount(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s)
		ctx := context.Background()
		require.NoError(t, s.AddAccount(ctx, "m1", "alice", "correct horse"))
		require.NoError(t, s.AddAccount(ctx, "m1", "bob", "correct horse"))
		require.NoError(t, s.SaveRegistration(ctx, callrec.Registration{User: "alice", Contact: "sip:alice@127.0.0.1:5070",
			Source: "127.0.0.1:5070", Transport: "udp", Expires: time.Now().Add(time.Hour)}))

		err := s.RemoveAccount(ctx, "m2", "alice")
		require.ErrorIs(t, err, ErrNotFound)
		require.EqualError(t, err, "account alice of merchant m2: not found", "another merchant cannot remove it")
		require.ErrorIs(t, s.RemoveAccount(ctx, "m9", "alice"), ErrNotFound)

		require.NoError(t, s.RemoveAccount(ctx, "m1", "alice"))
		_, err = s.Account(ctx, "alice")
		require.ErrorIs(t, err, ErrNotFound, "the next request finds no login")
		_, ok, err := s.LookupRegistration(ctx, "alice", time.Now())
		require.NoError(t, err)
		require.False(t, ok, "its registration went with it")
		as, err := s.ListAccounts(ctx, "m1")
		require.NoError(t, err)
		require.Len(t, as, 1)
		require.Equal(t, "bob", as[0].User)
		err = s.RemoveAccount(ctx, "m1", "alice")
		require.EqualError(t, err, "account alice of merchant m1: not found")

		// The name is free again, for any merchant.
		require.NoError(t, s.AddAccount(ctx, "m2", "alice", "another one"))
	})
}

// TestCallbackAfterAccountRemoved: a consignee calling back after the
// account that last called them was removed reaches the merchant's
// accounts, and never an account of another merchant that took the name.
func TestCallbackAfterAccountRemoved(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, b := callbackStore(t, be, "alice", "bob")
		ctx := context.Background()
		now := t0.Add(time.Hour)
		answered(t, s, b.ID, "x", "+8613700137000", callrec.CallerNumber, now)
		answered(t, s, b.ID, "y", "alice", callrec.CallerAccount, now.Add(time.Minute))
		cb, err := s.ResolveCallback(ctx, b.Host, "13800138000", now.Add(2*time.Minute))
		require.NoError(t, err)
		require.Equal(t, "alice", cb.Account)

		require.NoError(t, s.RemoveAccount(ctx, "m1", "alice"))
		want := callrec.Callback{Target: b.Target(), Accounts: []string{"bob"}}
		cb, err = s.ResolveCallback(ctx, b.Host, "13800138000", now.Add(3*time.Minute))
		require.NoError(t, err)
		require.Equal(t, want, cb)

		require.NoError(t, s.AddAccount(ctx, "m2", "alice", "another one"))
		cb, err = s.ResolveCallback(ctx, b.Host, "13800138000", now.Add(4*time.Minute))
		require.NoError(t, err)
		require.Equal(t, want, cb, "m2's alice is not m1's")
	})
}
