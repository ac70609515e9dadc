package events

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSignature pins the signature's form and Verify's rules, and that
// the merchant's own check (verify, as the README shows it) agrees.
func TestSignature(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	body := []byte(`{"id":"ev_1","type":"call.started"}`)
	h := Sign("whsec-0123456789abcdef", at, body)
	// HMAC-SHA256("whsec-0123456789abcdef", "1793520000." + body), worked out independently:
	// printf '%s' '1793520000.{"id":"ev_1","type":"call.started"}' | openssl dgst -sha256 -hmac whsec-0123456789abcdef
	require.Equal(t, "t=1793520000,v1=b83469d88e7188bce979a8295ff6c42fab0f7f854c3d9b94f35ff4a8e8a3fe31", h)

	for name, c := range map[string]struct {
		secret, header string
		body           []byte
		now            time.Time
		want           error
	}{
		"good":           {"whsec-0123456789abcdef", h, body, at.Add(time.Minute), nil},
		"two v1, one ok": {"whsec-0123456789abcdef", h[:12] + ",v1=00" + h[12:], body, at, nil},
		"other secret":   {"whsec-0123456789abcdeX", h, body, at, ErrBadSignature},
		"other body":     {"whsec-0123456789abcdef", h, []byte(`{"id":"ev_2","type":"call.started"}`), at, ErrBadSignature},
		"old":            {"whsec-0123456789abcdef", h, body, at.Add(6 * time.Minute), ErrStale},
		"future":         {"whsec-0123456789abcdef", h, body, at.Add(-6 * time.Minute), ErrStale},
		"no t":           {"whsec-0123456789abcdef", h[13:], body, at, ErrBadSignature},
		"garbage":        {"whsec-0123456789abcdef", "hello", body, at, ErrBadSignature},
		"empty":          {"whsec-0123456789abcdef", "", body, at, ErrBadSignature},
	} {
		err := Verify(c.secret, c.header, c.body, c.now)
		if c.want == nil {
			require.NoError(t, err, name)
			continue
		}
		require.ErrorIs(t, err, c.want, name)
	}
	now := time.Now()
	require.NoError(t, verify("whsec-0123456789abcdef", Sign("whsec-0123456789abcdef", now, body), body))
	require.Error(t, verify("whsec-0123456789abcdef", Sign("whsec-0123456789abcdef", now, body), append(body, ' ')))
}

// TestPrivateAddresses pins which addresses are inside.
func TestPrivateAddresses(t *testing.T) {
	t.Parallel()
	for _, ip := range []string{"127.0.0.1", "127.8.8.8", "::1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
		"fe80::1", "fc00::1", "fd12::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "100.64.0.1", "198.18.0.1",
		"240.0.0.1", "255.255.255.255", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "192.0.0.8", "2001:db8::1"} {
		require.True(t, Private(netip.MustParseAddr(ip)), ip)
	}
	for _, ip := range []string{"203.0.113.10", "8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"} {
		require.False(t, Private(netip.MustParseAddr(ip)), ip)
	}
}
