package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBindingTTLBounds pins SPEC §5 for binding.ttl: between 1h and 8760h.
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
