package protection

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// platform is the recommended policy in a zone: quiet 21:00-08:00, three
// calls a day from a caller, ten over a binding.
func platform(t *testing.T, zoneName string) Platform {
	t.Helper()
	w, err := ParseWindow("21:00-08:00")
	require.NoError(t, err)
	return Platform{Location: zone(t, zoneName), QuietHours: w, CallsPerDay: 3, CallsPerBinding: 10,
		Announce: AnnounceConfirm, ConfirmTimeout: 10 * time.Second, BlockKey: "*9", AfterClose: 360 * time.Hour}
}

// TestDecideOrder: the first rule that applies gives the verdict, in the
// order restricted, blocked, quiet hours, caps; each verdict has its CDR
// disposition.
func TestDecideOrder(t *testing.T) {
	t.Parallel()
	p := Effective(platform(t, "Asia/Shanghai"), Own{})
	day := time.Date(2026, 11, 30, 10, 0, 0, 0, p.Location)
	night := time.Date(2026, 11, 30, 22, 0, 0, 0, p.Location)
	for name, c := range map[string]struct {
		f    Facts
		want Verdict
	}{
		"allowed":              {Facts{Now: day, Today: 2, Binding: 9}, Allow},
		"restricted first":     {Facts{Now: night, Restricted: true, Blocked: true, Today: 3}, Restricted},
		"blocked before quiet": {Facts{Now: night, Blocked: true, Today: 3}, Blocked},
		"quiet before cap":     {Facts{Now: night, Today: 3}, QuietHours},
		"day cap":              {Facts{Now: day, Today: 3}, Capped},
		"binding cap":          {Facts{Now: day, Today: 0, Binding: 10}, Capped},
	} {
		d := Decide(p, c.f)
		require.Equal(t, c.want, d.Verdict, name)
		require.Equal(t, c.want == Allow, d.Allowed(), name)
		require.NotEmpty(t, d.Reason, name)
		require.Equal(t, p, d.Policy, name)
	}
	require.Equal(t, callrec.DispositionQuietHours, QuietHours.Disposition())
	require.Equal(t, callrec.DispositionCapped, Capped.Disposition())
	require.Equal(t, callrec.DispositionBlocked, Blocked.Disposition())
	require.Equal(t, callrec.DispositionRestricted, Restricted.Disposition())
	require.Empty(t, Allow.Disposition())
	for _, v := range []Verdict{Allow, Restricted, Blocked, QuietHours, Capped} {
		if v != Allow {
			require.Equal(t, string(v.Disposition()), v.String(), "metric reason and disposition agree")
			require.True(t, v.Disposition().Free())
		}
	}
}

// TestCapAllowsExactlyN: a cap of n lets calls 1..n ring and refuses the
// next; no cap refuses none.
func TestCapAllowsExactlyN(t *testing.T) {
	t.Parallel()
	pl := platform(t, "Asia/Shanghai")
	pl.QuietHours = Window{}
	p := Effective(pl, Own{})
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, p.Location)
	for counted := range 5 {
		require.Equal(t, counted < 3, Decide(p, Facts{Now: now, Today: counted}).Allowed(), "after %d", counted)
	}
	pl.CallsPerDay, pl.CallsPerBinding = 0, 0
	require.True(t, Decide(Effective(pl, Own{}), Facts{Now: now, Today: 1000, Binding: 1000}).Allowed())
	require.False(t, Effective(pl, Own{}).Counting())
	require.True(t, p.Counting())
}

// TestQuietHoursAcrossMidnight: at 21:00 the window begins on one day and
// holds past midnight into the next, until 08:00, in a zone without
// daylight saving; the reason names the window and the local time.
func TestQuietHoursAcrossMidnight(t *testing.T) {
	t.Parallel()
	p := Effective(platform(t, "Asia/Shanghai"), Own{})
	// 2026-11-30 is the last day of a month: the window runs into
	// December.
	for _, c := range []struct {
		utc   time.Time
		quiet bool
	}{
		{time.Date(2026, 11, 30, 12, 59, 0, 0, time.UTC), false}, // 20:59 on the 30th
		{time.Date(2026, 11, 30, 13, 0, 0, 0, time.UTC), true},   // 21:00
		{time.Date(2026, 11, 30, 15, 59, 0, 0, time.UTC), true},  // 23:59
		{time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC), true},   // 00:00 on 1 December
		{time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC), true},  // 07:59
		{time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), false},    // 08:00
	} {
		d := Decide(p, Facts{Now: c.utc})
		require.Equal(t, c.quiet, d.Verdict == QuietHours, "%s", c.utc)
		if c.quiet {
			require.Contains(t, d.Reason, "21:00-08:00 in Asia/Shanghai")
			require.Contains(t, d.Reason, c.utc.In(p.Location).Format("15:04"))
		}
	}
}

// TestQuietHoursFollowTheWallClock: in a zone with daylight saving the
// window follows the local clock, so the same UTC instant is quiet the
// day before the clocks go forward and not the day after.
func TestQuietHoursFollowTheWallClock(t *testing.T) {
	t.Parallel()
	p := Effective(platform(t, "America/New_York"), Own{})
	// 12:30 UTC is 07:30 EST on Saturday 7 March 2026 and 08:30 EDT on
	// Sunday 8 March, after the clocks went forward at 02:00.
	require.Equal(t, QuietHours, Decide(p, Facts{Now: time.Date(2026, 3, 7, 12, 30, 0, 0, time.UTC)}).Verdict)
	require.Equal(t, Allow, Decide(p, Facts{Now: time.Date(2026, 3, 8, 12, 30, 0, 0, time.UTC)}).Verdict)
	// In autumn it is the other way round: 12:30 UTC is 08:30 EDT on
	// Saturday 31 October and 07:30 EST on Sunday 1 November.
	require.Equal(t, Allow, Decide(p, Facts{Now: time.Date(2026, 10, 31, 12, 30, 0, 0, time.UTC)}).Verdict)
	require.Equal(t, QuietHours, Decide(p, Facts{Now: time.Date(2026, 11, 1, 12, 30, 0, 0, time.UTC)}).Verdict)
}

// TestLocalDay: the daily cap counts the consignee's local day, which
// starts at local midnight, ends at the next one, is 23 or 25 hours long
// when the clocks change, and runs into the next month and year at their
// ends.
func TestLocalDay(t *testing.T) {
	t.Parallel()
	sh := Effective(platform(t, "Asia/Shanghai"), Own{})
	ny := Effective(platform(t, "America/New_York"), Own{})
	for _, c := range []struct {
		name       string
		p          Policy
		now        time.Time
		start, end time.Time
	}{
		{"a day in Shanghai", sh, time.Date(2026, 11, 15, 3, 0, 0, 0, time.UTC),
			time.Date(2026, 11, 14, 16, 0, 0, 0, time.UTC), time.Date(2026, 11, 15, 16, 0, 0, 0, time.UTC)},
		{"the month's last minute", sh, time.Date(2026, 11, 30, 15, 59, 59, 0, time.UTC),
			time.Date(2026, 11, 29, 16, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC)},
		{"the next month's first", sh, time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC),
			time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 16, 0, 0, 0, time.UTC)},
		{"the year's last day", sh, time.Date(2026, 12, 31, 20, 0, 0, 0, time.UTC),
			time.Date(2026, 12, 31, 16, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 16, 0, 0, 0, time.UTC)},
		{"February's last day", sh, time.Date(2027, 2, 28, 12, 0, 0, 0, time.UTC),
			time.Date(2027, 2, 27, 16, 0, 0, 0, time.UTC), time.Date(2027, 2, 28, 16, 0, 0, 0, time.UTC)},
		{"spring forward: 23 hours", ny, time.Date(2026, 3, 8, 15, 0, 0, 0, time.UTC),
			time.Date(2026, 3, 8, 5, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 4, 0, 0, 0, time.UTC)},
		{"fall back: 25 hours", ny, time.Date(2026, 11, 1, 15, 0, 0, 0, time.UTC),
			time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC), time.Date(2026, 11, 2, 5, 0, 0, 0, time.UTC)},
	} {
		start, end := c.p.Day(c.now)
		require.True(t, start.Equal(c.start), "%s: start %s, want %s", c.name, start.UTC(), c.start)
		require.True(t, end.Equal(c.end), "%s: end %s, want %s", c.name, end.UTC(), c.end)
		require.False(t, c.now.Before(start), c.name)
		require.True(t, c.now.Before(end), c.name)
	}
}

// TestEffective: the merchant's own protection makes each part stricter
// and never looser: the lower cap, both quiet windows, the stronger
// announce mode; Parts names what the merchant changed.
func TestEffective(t *testing.T) {
	t.Parallel()
	pl := platform(t, "Asia/Shanghai")
	pl.Announce = AnnounceInform
	lunch, err := ParseWindow("12:00-14:00")
	require.NoError(t, err)

	got := Effective(pl, Own{QuietHours: lunch, CallsPerDay: 2, CallsPerBinding: 0, Announce: AnnounceConfirm, Record: true})
	require.Equal(t, []Window{pl.QuietHours, lunch}, got.QuietHours)
	require.Equal(t, 2, got.CallsPerDay)
	require.Equal(t, 10, got.CallsPerBinding, "0 keeps the platform's")
	require.Equal(t, AnnounceConfirm, got.Announce)
	require.True(t, got.Record)
	require.Equal(t, pl.ConfirmTimeout, got.ConfirmTimeout)
	require.Equal(t, pl.BlockKey, got.BlockKey)
	require.Equal(t, []string{"quiet_hours", "calls_per_day", "announce", "record"},
		Own{QuietHours: lunch, CallsPerDay: 2, Announce: AnnounceConfirm, Record: true}.Parts(pl))

	// A merchant's window is quiet besides the platform's.
	require.Equal(t, QuietHours, Decide(got, Facts{Now: time.Date(2026, 11, 30, 13, 0, 0, 0, pl.Location)}).Verdict)
	require.Equal(t, QuietHours, Decide(got, Facts{Now: time.Date(2026, 11, 30, 22, 0, 0, 0, pl.Location)}).Verdict)
	require.Equal(t, Allow, Decide(got, Facts{Now: time.Date(2026, 11, 30, 15, 0, 0, 0, pl.Location)}).Verdict)

	// With nothing of its own a merchant gets the platform's; the same
	// window twice is one window.
	require.Equal(t, Effective(pl, Own{}), Effective(pl, Own{QuietHours: pl.QuietHours}))
	require.Empty(t, Own{QuietHours: pl.QuietHours, CallsPerDay: 3, Announce: AnnounceInform}.Parts(pl))
	off := Effective(Platform{}, Own{})
	require.Equal(t, AnnounceOff, off.Announce, "never unset")
	require.Equal(t, time.UTC, off.Location)
	require.False(t, off.Counting())

	// Where the platform has no cap, any cap of the merchant's is stricter.
	pl.CallsPerDay = 0
	require.Equal(t, 5, Effective(pl, Own{CallsPerDay: 5}).CallsPerDay)
	require.NoError(t, Own{CallsPerDay: 5}.Check(pl))
}

// TestOwnCheck: a looser value than the platform's is refused in one
// line naming each looser part; a stricter or equal one passes.
func TestOwnCheck(t *testing.T) {
	t.Parallel()
	pl := platform(t, "Asia/Shanghai")
	pl.Announce = AnnounceInform
	for _, o := range []Own{{}, {CallsPerDay: 3}, {CallsPerDay: 1, CallsPerBinding: 10}, {Announce: AnnounceInform},
		{Announce: AnnounceConfirm, Record: true}, {QuietHours: Window{Start: 0, End: 24 * 60}}} {
		require.NoError(t, o.Check(pl), "%+v", o)
	}
	err := Own{CallsPerDay: 4, CallsPerBinding: 11, Announce: AnnounceOff}.Check(pl)
	require.ErrorIs(t, err, ErrLooser)
	require.Equal(t, "looser than the platform's protection: calls_per_day 4 is above the platform's 3; "+
		"calls_per_binding 11 is above the platform's 10; announce off is weaker than the platform's inform "+
		"(a merchant may only make protection stricter)", err.Error())
	err = Own{CallsPerDay: -1}.Check(pl)
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "calls_per_day -1")
}

func TestParseAnnounce(t *testing.T) {
	t.Parallel()
	for _, a := range []Announce{AnnounceUnset, AnnounceOff, AnnounceInform, AnnounceConfirm} {
		got, err := ParseAnnounce(a.String())
		require.NoError(t, err)
		require.Equal(t, a, got)
	}
	_, err := ParseAnnounce("loud")
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, `announce "loud": want off, inform or confirm`)
	require.Less(t, AnnounceOff, AnnounceInform)
	require.Less(t, AnnounceInform, AnnounceConfirm)
}
