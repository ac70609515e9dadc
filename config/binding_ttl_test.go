package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBindingTTLBounds pins README "Bindings" for binding.ttl: between 1h and 8760h.
func TestBindingTTLBounds(t *testing.T) {
	for ttl, ok := range map[time.Duration]bool{
		time.Nanosecond:         false,
		time.Hour - time.Second: false,
		time.Hour:               true,
		8760 * time.Hour:        true,
		8760*time.Hour + 1:      false,
		2000000 * time.Hour:     false,
		DefaultBindingTTL:       true,
	} {
		c := Default()
		c.Binding.TTL = ttl
		err := c.Validate()
		if ok {
			require.NoError(t, err, ttl)
			continue
		}
		require.ErrorContains(t, err, "binding.ttl: must lie between 1h and 8760h", ttl)
	}
}

// TestDurationsShownAsWritten: a refused duration is named the way the
// file writes it ("9000h"), not the way Go prints it ("9000h0m0s").
func TestDurationsShownAsWritten(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vnum.yaml")
	require.NoError(t, os.WriteFile(file, []byte("binding:\n  ttl: 9000h\ncalls:\n  ring_timeout: -90s\n"), 0o600))
	c, err := Load(file)
	require.NoError(t, err)
	err = c.Validate()
	require.ErrorContains(t, err, "binding.ttl: must lie between 1h and 8760h (365 days), got 9000h")
	require.ErrorContains(t, err, "calls.ring_timeout: must be a positive duration, got -90s")
	require.NotContains(t, err.Error(), "0m0s")
}
