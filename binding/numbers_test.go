package binding

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNormaliseConsignee writes down which numbers may be a consignee (or
// a PSTN caller remembered for a call back), and their E.164 form.
func TestNormaliseConsignee(t *testing.T) {
	t.Parallel()
	good := map[string]struct{ in, want string }{
		"mobile":                     {"13800138000", "+8613800138000"},
		"mobile with separators":     {"+86 138-0013-8000", "+8613800138000"},
		"mobile after 86":            {"8613800138000", "+8613800138000"},
		"mobile after 0086":          {"008613800138000", "+8613800138000"},
		"mobile 19x":                 {"19912345678", "+8619912345678"},
		"Beijing fixed line":         {"010 6234 5678", "+861062345678"},
		"Beijing fixed line, E.164":  {"+861062345678", "+861062345678"},
		"Hangzhou fixed line, 8":     {"0571-8765-4321", "+8657187654321"},
		"county fixed line, 7":       {"0398 2345678", "+863982345678"},
		"Guangzhou, 0086":            {"00862087654321", "+862087654321"},
		"US, E.164":                  {"+14155550123", "+14155550123"},
		"UK, 00 prefix":              {"00442079460123", "+442079460123"},
		"shortest E.164, 8 digits":   {"+50012345", "+50012345"},
		"longest E.164, 15 digits":   {"+491234567890123", "+491234567890123"},
		"tab and spaces are ignored": {" 138\t0013 8000 ", "+8613800138000"},
	}
	for name, tc := range good {
		got, err := NormaliseConsignee(tc.in)
		require.NoError(t, err, name)
		require.Equal(t, tc.want, got, name)
	}
	bad := map[string]struct{ in, why string }{
		"empty":                         {"", "want an 11-digit mobile number"},
		"letters":                       {"abc", "want an 11-digit mobile number"},
		"11 digits starting 2":          {"23800138000", "want an 11-digit mobile number"},
		"mobile prefix 12":              {"12800138000", "not a mobile number"},
		"mobile prefix 10, +86":         {"+8610800138000", "not a mobile number"},
		"10-digit mobile":               {"1390013900", "want an 11-digit mobile number"},
		"local number starting 1":       {"01012345678", "a +86 number must be a mobile number"},
		"local number starting 0":       {"01002345678", "a +86 number must be a mobile number"},
		"fixed line without its 0":      {"1062345678", "want an 11-digit mobile number"},
		"+86 then the trunk prefix 0":   {"+8601062345678", "a +86 number must be a mobile number"},
		"fixed line too short":          {"010 623 4567", "a +86 number must be a mobile number"},
		"fixed line too long":           {"0571 8765 43210", "a +86 number must be a mobile number"},
		"400 service number":            {"+86 400 800 1234", "a +86 number must be a mobile number"},
		"800 toll-free number":          {"+868008101234", "a +86 number must be a mobile number"},
		"country code 0":                {"+0123456789", "want an 11-digit mobile number"},
		"E.164 of 7 digits":             {"+1234567", "want an 11-digit mobile number"},
		"E.164 of 16 digits":            {"+1234567890123456", "want an 11-digit mobile number"},
		"13 digits not after 86":        {"1234567890123", "want an 11-digit mobile number"},
		"plus with letters":             {"+86138OO138000", "want an 11-digit mobile number"},
		"SIP parameters in a From user": {"13800138000;x=1", "want an 11-digit mobile number"},
	}
	for name, tc := range bad {
		_, err := NormaliseConsignee(tc.in)
		require.ErrorIs(t, err, ErrInvalid, name)
		require.ErrorContains(t, err, tc.why, name)
		if tc.in != "" {
			require.NotContains(t, err.Error(), tc.in, "%s: the error quotes the number", name)
		}
	}
}

// TestParseTTL: a lifetime is read as written, and refused quoting what
// was written.
func TestParseTTL(t *testing.T) {
	t.Parallel()
	good := map[string]time.Duration{"": 0, "720h": 720 * time.Hour, "1h": time.Hour, "90m": 90 * time.Minute,
		"8760h": MaxTTL, " 2h ": 2 * time.Hour}
	for in, want := range good {
		got, err := ParseTTL(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	bad := map[string]string{
		"9000h":    "invalid ttl 9000h: must lie between 1h and 8760h (365 days)",
		"59m":      "invalid ttl 59m: must lie between 1h and 8760h",
		"8760h1s":  "invalid ttl 8760h1s: must lie between",
		"-1h":      "invalid ttl -1h: must lie between",
		"0s":       "invalid ttl 0s: must lie between",
		"720":      `invalid ttl "720": want a duration with a unit between 1h and 8760h, such as 720h`,
		"0":        `invalid ttl "0": want a duration with a unit`,
		"forever":  `invalid ttl "forever": want a duration with a unit`,
		"1y":       `invalid ttl "1y": want a duration with a unit`,
		"2000000h": "invalid ttl 2000000h: must lie between",
	}
	for in, want := range bad {
		_, err := ParseTTL(in)
		require.ErrorIs(t, err, ErrInvalid, in)
		require.True(t, strings.HasPrefix(err.Error(), want), "%s: %v", in, err)
	}
	// A lifetime that came as a duration is shown the way vnum writes them.
	require.EqualError(t, ValidTTL(9000*time.Hour), "invalid ttl 9000h: must lie between 1h and 8760h (365 days)")
}
