package sip

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParseDialledLengths: host numbers of 5 to 15 digits, the 15-digit
// numbers of the 700 range for number protection among them, in every
// form a phone dials them, and extensions of 2 to 6 digits. A bare 86 is
// a prefix before 11 digits or in a number too long to be a host number,
// as the store reads host numbers.
func TestParseDialledLengths(t *testing.T) {
	t.Parallel()
	const x15 = "700123456789012"
	for user, want := range map[string]Dialled{
		"12345":                  {Host: "12345"},
		"12345-67":               {Host: "12345", Extension: "67"},
		"+8612345,67":            {Host: "12345", Extension: "67"},
		x15:                      {Host: x15},
		x15 + "-123456":          {Host: x15, Extension: "123456"},
		x15 + ",123456":          {Host: x15, Extension: "123456"},
		x15 + ";ext=12":          {Host: x15, Extension: "12"},
		"+86" + x15 + ";EXT=12":  {Host: x15, Extension: "12"},
		"86" + x15 + "-1234":     {Host: x15, Extension: "1234"},
		"0086" + x15:             {Host: x15},
		"8617000000001":          {Host: "17000000001"},
		"861234567890":           {Host: "861234567890"}, // 12 digits: a host number of its own
		"86123456789012":         {Host: "86123456789012"},
		"+8617000000001,,,1234p": {Host: "17000000001", Extension: "1234"},
	} {
		got, err := ParseDialled(user, "")
		require.NoError(t, err, user)
		require.Equal(t, want, got, user)
	}
	for _, user := range []string{"1234", "+861234", "1234567890123456", "+861234567890123456",
		"0086", "86", "+86", "7001234567890a2", x15 + "1"} {
		_, err := ParseDialled(user, "")
		require.ErrorIs(t, err, ErrNotHostNumber, user)
		require.ErrorContains(t, err, "5 to 15 digits", user)
	}
}
