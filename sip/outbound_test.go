package sip

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFormatNumber: how a number stored in E.164 goes on the trunk in each
// trunk.number_format.
func TestFormatNumber(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, national, e164 string }{
		"mobile":                 {"+8613800138000", "13800138000", "+8613800138000"},
		"Beijing fixed line":     {"+861062345678", "01062345678", "+861062345678"},
		"Hangzhou fixed line":    {"+8657187654321", "057187654321", "+8657187654321"},
		"three-digit area, 7":    {"+863982345678", "03982345678", "+863982345678"},
		"another country, as is": {"+14155550123", "14155550123", "+14155550123"},
	}
	for name, tc := range tests {
		require.Equal(t, tc.national, formatNumber(tc.in, "national"), name)
		require.Equal(t, tc.e164, formatNumber(tc.in, "e164"), name)
	}
}
