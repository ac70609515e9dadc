package binding

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestResolveCallback(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	seed(t, s, "17000000001")
	ctx := context.Background()
	require.NoError(t, s.AddAccount(ctx, "m1", "alice", "correct horse"))
	b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
	require.NoError(t, err)
	now := t0.Add(time.Hour)

	got, last, err := s.ResolveCallback(ctx, b.Host, "013800138000"[1:], now)
	require.NoError(t, err)
	require.Equal(t, b.ID, got.ID)
	require.Empty(t, last, "nobody called yet: the merchant's accounts ring")

	c := &CDR{CallID: "x", Merchant: "m1", BindingID: b.ID, Direction: DirectionToConsignee, Caller: "alice",
		StartedAt: now, AnsweredAt: now.Add(time.Second)}
	require.NoError(t, s.StartCDR(ctx, c))
	_, last, err = s.ResolveCallback(ctx, "+86"+b.Host, "+8613800138000", now.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, "alice", last)

	_, _, err = s.ResolveCallback(ctx, b.Host, "13900139000", now)
	require.ErrorIs(t, err, ErrNoBinding)
	_, _, err = s.ResolveCallback(ctx, b.Host, "13800138000", b.ExpiresAt)
	require.ErrorIs(t, err, ErrNoBinding)

	accts, err := s.MerchantAccounts(ctx, "m1")
	require.NoError(t, err)
	require.Len(t, accts, 1)
	require.Equal(t, "alice", accts[0].User)
}

// TestLastCallerIsDialable: a call back dials the last caller, so a record
// whose caller is not an account or a phone number (an unvalidated From
// user written before callers were checked, or none) is passed over.
func TestLastCallerIsDialable(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	seed(t, s, "17000000001")
	ctx := context.Background()
	b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
	require.NoError(t, err)
	now := t0.Add(time.Hour)
	for i, caller := range []string{"+8613700137000", "13900000002;x=1?X-Injected=evil", "", "a\r\nb"} {
		at := now.Add(time.Duration(i) * time.Minute)
		require.NoError(t, s.StartCDR(ctx, &CDR{CallID: "c" + string(rune('0'+i)), Merchant: "m1", BindingID: b.ID,
			Direction: DirectionToConsignee, Caller: caller, StartedAt: at, AnsweredAt: at.Add(time.Second)}))
	}
	_, last, err := s.ResolveCallback(ctx, b.Host, "13800138000", now.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, "+8613700137000", last, "the latest caller that can be dialled")
}
