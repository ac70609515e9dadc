package binding

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNormaliseHost: host numbers of 5 to 15 digits, with the prefixes
// callers dial; a bare 86 is a prefix before 11 digits or in a number too
// long to be a host number, as signalling reads dialled numbers.
func TestNormaliseHost(t *testing.T) {
	t.Parallel()
	const x15 = "700123456789012"
	for in, want := range map[string]string{
		"17000000001":      "17000000001",
		"+8617000000001":   "17000000001",
		"8617000000001":    "17000000001",
		"008617000000001":  "17000000001",
		"170 0000 0001":    "17000000001",
		"12345":            "12345",
		"+8612345":         "12345",
		x15:                x15,
		"+86" + x15:        x15,
		"86" + x15:         x15,
		"861234567890":     "861234567890",
		"86123456789012":   "86123456789012",
		"861234567890123":  "861234567890123",
		"1234567890123456": "", // 16 digits
	} {
		got, err := NormaliseHost(in)
		if want == "" {
			require.ErrorIs(t, err, ErrInvalid, in)
			continue
		}
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "1234", "+861234", "86", "+86", "0086", "17000000001x", "+1 415 555 0123"} {
		_, err := NormaliseHost(in)
		require.ErrorIs(t, err, ErrInvalid, in)
		require.ErrorContains(t, err, "want 5 to 15 digits", in)
	}
}

// TestHostNumberLengths: a pool of 5- and 15-digit host numbers gives out
// bindings shown and dialled as X转E and X,E, which resolve and call back.
func TestHostNumberLengths(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		p := DefaultPolicy()
		p.ExtensionDigits = 6
		s, _ := be.open(t, WithPolicy(p))
		ctx := context.Background()
		seed(t, s, "+86700123456789012")
		b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)
		require.Equal(t, "700123456789012", b.Host)
		require.Regexp(t, `^[0-9]{6}$`, b.Extension)
		require.Equal(t, "700123456789012转"+b.Extension, b.Display())
		require.Equal(t, "700123456789012,"+b.Extension, b.Dial())
		got, err := s.Resolve(ctx, "86700123456789012", b.Extension, "m1", t0)
		require.NoError(t, err)
		require.Equal(t, b.ID, got.ID)
		ok, err := s.IsHostNumber(ctx, "+86700123456789012")
		require.NoError(t, err)
		require.True(t, ok)
		cb, err := s.ResolveCallback(ctx, b.Host, "13800138000", t0)
		require.NoError(t, err)
		require.Equal(t, b.ID, cb.BindingID)

		require.NoError(t, s.AddNumbers(ctx, "12345"))
		ok, err = s.IsHostNumber(ctx, "12345")
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, s.RemoveNumber(ctx, "12345"))
	})
}

// TestPickExtensionSixDigits: with six digits a host holds 100,000
// extensions; the last free word of a nearly full host is found, and a
// full one is reported full, each at once.
func TestPickExtensionSixDigits(t *testing.T) {
	t.Parallel()
	const digits, check = 6, 3
	n := pow10(digits - 1)
	used := make([]string, 0, n)
	for r := range n {
		used = append(used, codeword(r, digits, check))
	}
	last := used[4242]
	used = append(used[:4242], used[4243:]...)
	e, ok, err := pickExtension(used, digits, check)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, last, e)
	_, ok, err = pickExtension(append(used, last), digits, check)
	require.NoError(t, err)
	require.False(t, ok, "full")

	// One extension of another code one digit away takes its neighbours.
	e, ok, err = pickExtension([]string{"12"}, 2, 0)
	require.NoError(t, err)
	require.True(t, ok)
	require.GreaterOrEqual(t, hamming(e, "12"), 2)
	for _, c := range []struct{ digits, capacity int }{{2, 10}, {3, 100}, {4, 1000}, {5, 10000}, {6, 100000}} {
		require.Equal(t, c.capacity, pow10(c.digits-1))
	}
}
