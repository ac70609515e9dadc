package protection

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseWindow(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Window{
		"":               {},
		"   ":            {},
		"21:00-08:00":    {Start: 21 * 60, End: 8 * 60},
		" 12:30 - 14:00": {Start: 12*60 + 30, End: 14 * 60},
		"00:00-24:00":    {Start: 0, End: 24 * 60},
		"22:00-24:00":    {Start: 22 * 60, End: 24 * 60},
		"23:59-00:01":    {Start: 23*60 + 59, End: 1},
	} {
		got, err := ParseWindow(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
		if !got.IsZero() {
			back, err := ParseWindow(got.String())
			require.NoError(t, err)
			require.Equal(t, got, back, "String reads back")
		}
	}
	for _, in := range []string{"21:00", "21-08", "9:00-17:00", "21:00-8:00", "24:00-08:00", "21:60-08:00",
		"25:00-08:00", "21:00-24:01", "08:00-08:00", "00:00-00:00", "ab:cd-ef:gh", "+1:00-08:00", "-1:00-08:00",
		"21:00-08:00-09:00", "21.00-08.00"} {
		_, err := ParseWindow(in)
		require.ErrorIs(t, err, ErrInvalid, in)
		require.ErrorContains(t, err, "quiet hours "+`"`+in+`"`, "the error quotes the value")
		require.NotContains(t, err.Error(), "\n")
	}
}

// TestWindowContains: a window that wraps midnight holds from its start
// up to, not including, its end; minute by minute around both edges.
func TestWindowContains(t *testing.T) {
	t.Parallel()
	shanghai := zone(t, "Asia/Shanghai")
	at := func(h, m int) time.Time { return time.Date(2026, 11, 30, h, m, 0, 0, shanghai) }
	night, err := ParseWindow("21:00-08:00")
	require.NoError(t, err)
	lunch, err := ParseWindow("12:00-14:00")
	require.NoError(t, err)
	for _, c := range []struct {
		w     Window
		h, m  int
		quiet bool
	}{
		{night, 20, 59, false}, {night, 21, 0, true}, {night, 23, 59, true}, {night, 0, 0, true},
		{night, 7, 59, true}, {night, 8, 0, false}, {night, 12, 0, false},
		{lunch, 11, 59, false}, {lunch, 12, 0, true}, {lunch, 13, 59, true}, {lunch, 14, 0, false},
		{Window{}, 3, 0, false},
	} {
		require.Equal(t, c.quiet, c.w.Contains(at(c.h, c.m)), "%s at %02d:%02d", c.w, c.h, c.m)
	}
	// The wall clock of the time's own zone counts, not UTC's: 23:30 in
	// Shanghai is 15:30 UTC.
	require.True(t, night.Contains(at(23, 30)))
	require.False(t, night.Contains(at(23, 30).UTC()))
}

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}
