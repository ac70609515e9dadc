package binding

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/protection"
)

// The consignees of the protection tests: b is the one most tests ring,
// other a second one.
const (
	consigneeB     = "13912345678"
	consigneeOther = "15800158000"
)

// bindTo makes a binding of merchant for order to consignee.
func bindTo(t *testing.T, s *Store, merchant, order, consignee string, at time.Time) *Binding {
	t.Helper()
	b, err := s.CreateBinding(context.Background(),
		CreateRequest{Merchant: merchant, Order: order, Consignee: consignee, OrderStatus: OrderShipped}, at)
	require.NoError(t, err)
	return b
}

// fromAccount and fromNumber are a call through binding b from a
// merchant's account and from a PSTN number.
func fromAccount(b *Binding) callrec.Ring {
	return callrec.Ring{BindingID: b.ID, CallerKind: callrec.CallerAccount, Caller: "alice"}
}

func fromNumber(b *Binding, number string) callrec.Ring {
	return callrec.Ring{BindingID: b.ID, CallerKind: callrec.CallerNumber, Caller: number}
}

// verdict is TakeRing's verdict, the test failing on an error.
func verdict(t *testing.T, s *Store, r callrec.Ring, p protection.Platform, now time.Time) protection.Verdict {
	t.Helper()
	d, err := s.TakeRing(context.Background(), r, p, now)
	require.NoError(t, err)
	return d.Verdict
}

// rings counts the calls the store counted.
func rings(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	require.NoError(t, s.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM rings`).Scan(&n))
	return n
}

// capped is a platform in Shanghai with the given caps and nothing else.
func capped(t *testing.T, perDay, perBinding int) protection.Platform {
	t.Helper()
	return protection.Platform{Location: shanghai(t), CallsPerDay: perDay, CallsPerBinding: perBinding,
		Announce: protection.AnnounceOff, AfterClose: afterClose}
}

// TestTakeRingDailyCap: calls_per_day counts one caller's calls to one
// consignee per local day, over all the merchant's bindings to them and
// all its accounts; another merchant, a PSTN number and another
// consignee are other pairs; the next local day starts afresh, the
// month's last day included.
func TestTakeRingDailyCap(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		b1 := bindTo(t, s, "m1", "o-1", consigneeB, t0)
		b2 := bindTo(t, s, "m1", "o-2", consigneeB, t0)
		other := bindTo(t, s, "m1", "o-3", consigneeOther, t0)
		foreign := bindTo(t, s, "m2", "o-9", consigneeB, t0)
		p := capped(t, 2, 0)
		// 2026-11-30 is the last day of the month; 23:59 in Shanghai.
		late := time.Date(2026, 11, 30, 23, 59, 0, 0, shanghai(t))

		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b1), p, late.Add(-10*time.Hour)))
		bob := fromAccount(b2)
		bob.Caller = "bob" // another account of the same merchant
		require.Equal(t, protection.Allow, verdict(t, s, bob, p, late.Add(-time.Hour)))
		d, err := s.TakeRing(context.Background(), fromAccount(b1), p, late)
		require.NoError(t, err)
		require.Equal(t, protection.Capped, d.Verdict, "the merchant's third call to B today, through either binding")
		require.Contains(t, d.Reason, "calls_per_day 2 reached")
		require.Contains(t, d.Reason, "2026-11-30")
		require.NotContains(t, d.Reason, "3912345678", "no consignee in the reason")
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(other), p, late), "another consignee")
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(foreign), p, late), "another merchant")
		require.Equal(t, protection.Allow, verdict(t, s, fromNumber(b1, "+8613700137000"), p, late), "a courier")
		require.Equal(t, protection.Allow, verdict(t, s, fromNumber(foreign, "+8613700137000"), p, late))
		require.Equal(t, protection.Capped, verdict(t, s, fromNumber(b2, "+8613700137000"), p, late),
			"the courier's third call to B, through any merchant's binding")
		require.Equal(t, 6, rings(t, s), "refused calls are not counted")

		// One minute later it is 1 December in Shanghai: a new day.
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b1), p, late.Add(time.Minute)))
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b2), p, late.Add(2*time.Minute)))
		require.Equal(t, protection.Capped, verdict(t, s, fromAccount(b2), p, late.Add(3*time.Minute)))
	})
}

// TestTakeRingDayInDSTZone: the local day of a zone with daylight saving
// is counted by its wall clock: on the day the clocks go forward (23
// hours) a call at 00:30 and one at 23:30 fall on the same day; the next
// call, at 00:30 the day after, does not.
func TestTakeRingDayInDSTZone(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		b := bindTo(t, s, "m1", "o-1", consigneeB, t0)
		ny, err := time.LoadLocation("America/New_York")
		require.NoError(t, err)
		p := protection.Platform{Location: ny, CallsPerDay: 2, AfterClose: afterClose}
		day := func(d, h, m int) time.Time { return time.Date(2026, 3, d, h, m, 0, 0, ny) }
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b), p, day(8, 0, 30)))
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b), p, day(8, 23, 30)))
		require.Equal(t, protection.Capped, verdict(t, s, fromAccount(b), p, day(8, 23, 59)))
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b), p, day(9, 0, 0)))
	})
}

// TestTakeRingBindingCap: calls_per_binding counts every caller over one
// binding's life, across days; the merchant's own cap is stricter; a
// refusal before the caps (quiet hours, one-way) counts nothing; with no
// cap in force nothing is counted.
func TestTakeRingBindingCap(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		b := bindTo(t, s, "m1", "o-1", consigneeB, t0)
		p := capped(t, 0, 3)
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b), p, t0))
		require.Equal(t, protection.Allow, verdict(t, s, fromNumber(b, "+8613700137000"), p, t0.Add(48*time.Hour)))
		require.Equal(t, protection.Allow, verdict(t, s, fromNumber(b, ""), p, t0.Add(96*time.Hour)))
		d, err := s.TakeRing(ctx, fromNumber(b, "+8613600136000"), p, t0.Add(200*time.Hour))
		require.NoError(t, err)
		require.Equal(t, protection.Capped, d.Verdict)
		require.Contains(t, d.Reason, "calls_per_binding 3 reached")

		// The merchant's own cap is lower than the platform's.
		b2 := bindTo(t, s, "m1", "o-2", consigneeOther, t0)
		require.NoError(t, s.SetMerchantProtection(ctx, "m1", protection.Own{CallsPerBinding: 1}, p))
		require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b2), p, t0))
		require.Equal(t, protection.Capped, verdict(t, s, fromAccount(b2), p, t0.Add(time.Hour)))

		// Quiet hours and one-way bindings refuse before counting.
		n := rings(t, s)
		night, err := protection.ParseWindow("21:00-08:00")
		require.NoError(t, err)
		quiet := p
		quiet.QuietHours = night
		b3 := bindTo(t, s, "m2", "o-3", consigneeOther, t0)
		d, err = s.TakeRing(ctx, fromAccount(b3), quiet, time.Date(2026, 11, 2, 22, 0, 0, 0, shanghai(t)))
		require.NoError(t, err)
		require.Equal(t, protection.QuietHours, d.Verdict)
		require.Equal(t, callrec.DispositionQuietHours, d.Verdict.Disposition())
		oneWay := shipped("o-4")
		oneWay.Consignee, oneWay.Calls = consigneeOther, string(callrec.CallsFromConsignee)
		b4, err := s.CreateBinding(ctx, oneWay, t0)
		require.NoError(t, err)
		require.Equal(t, protection.Restricted, verdict(t, s, fromAccount(b4), p, t0))
		require.Equal(t, n, rings(t, s))

		// With no cap nothing is written.
		require.NoError(t, s.SetMerchantProtection(ctx, "m1", protection.Own{}, p))
		for range 3 {
			require.Equal(t, protection.Allow, verdict(t, s, fromAccount(b), capped(t, 0, 0), t0))
		}
		require.Equal(t, n, rings(t, s))

		// The decision carries the policy the call goes on under.
		require.NoError(t, s.SetMerchantProtection(ctx, "m2",
			protection.Own{Announce: protection.AnnounceConfirm, Record: true}, p))
		d, err = s.TakeRing(ctx, fromAccount(b3), p, t0)
		require.NoError(t, err)
		require.True(t, d.Allowed())
		require.Equal(t, protection.AnnounceConfirm, d.Policy.Announce)
		require.True(t, d.Policy.Record)

		_, err = s.TakeRing(ctx, callrec.Ring{BindingID: "b_nope", CallerKind: callrec.CallerAccount}, p, t0)
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.TakeRing(ctx, callrec.Ring{BindingID: b.ID, CallerKind: callrec.CallerConsignee}, p, t0)
		require.ErrorIs(t, err, ErrInvalid)
	})
}

// TestTakeRingRace: eight calls race for the last place under a cap, on
// two stores sharing one database (two nodes: one PostgreSQL database, or
// one SQLite file): exactly one rings, for the daily cap and for the
// binding's cap, and the store counts exactly the cap.
func TestTakeRingRace(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s1, dsn := be.open(t)
		s2 := openNode(t, be, dsn, "")
		seed(t, s1, "17000000001")
		const racers = 8
		now := time.Date(2026, 11, 30, 12, 0, 0, 0, shanghai(t))
		for name, c := range map[string]struct {
			p    protection.Platform
			ring func(b *Binding, i int) callrec.Ring
		}{
			"calls_per_day": {capped(t, 5, 0), func(b *Binding, _ int) callrec.Ring { return fromAccount(b) }},
			"calls_per_binding": {capped(t, 0, 5), func(b *Binding, i int) callrec.Ring {
				return fromNumber(b, "+861370013700"+string(rune('0'+i)))
			}},
		} {
			consignee := consigneeB
			if name == "calls_per_binding" {
				consignee = consigneeOther
			}
			b := bindTo(t, s1, "m1", "race-"+name, consignee, t0)
			for i := range 4 {
				require.Equal(t, protection.Allow, verdict(t, s1, c.ring(b, 9), c.p, now), "place %d", i+1)
			}
			start := make(chan struct{})
			verdicts := make([]protection.Verdict, racers)
			errs := make([]error, racers)
			var wg sync.WaitGroup
			for i := range racers {
				s := s1
				if i%2 == 1 {
					s = s2
				}
				wg.Go(func() {
					<-start
					d, err := s.TakeRing(context.Background(), c.ring(b, i), c.p, now)
					verdicts[i], errs[i] = d.Verdict, err
				})
			}
			close(start)
			wg.Wait()
			allowed := 0
			for i := range racers {
				require.NoError(t, errs[i], "%s: racer %d", name, i)
				if verdicts[i] == protection.Allow {
					allowed++
				} else {
					require.Equal(t, protection.Capped, verdicts[i])
				}
			}
			require.Equal(t, 1, allowed, "%s: exactly one call gets the last place", name)
			var n int
			require.NoError(t, s1.db.QueryRowContext(context.Background(),
				`SELECT COUNT(*) FROM rings WHERE binding_id = ?`, b.ID).Scan(&n))
			require.Equal(t, 5, n, "%s: the store counted exactly the cap", name)
		}
	})
}

// plainAt is whether Resolve finds binding b plain at now.
func plainAt(t *testing.T, s *Store, b *Binding, now time.Time) bool {
	t.Helper()
	got, err := s.Resolve(context.Background(), b.Host, b.Extension, "", now)
	require.NoError(t, err)
	return got.Target().Plain
}

// TestResolvePlain: Resolve finds a binding plain only while neither its
// merchant's own protection nor a block of its consignee (by anyone, for
// any caller) nor a one-way setting applies; a plain call under a
// platform that counts nothing is decided without the store, and one
// under a cap is read and counted as before.
func TestResolvePlain(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s, "17000000001")
		ctx := context.Background()
		b := bindTo(t, s, "m1", "o-1", consigneeB, t0)
		sameB := bindTo(t, s, "m2", "o-2", consigneeB, t0)
		other := bindTo(t, s, "m2", "o-3", consigneeOther, t0)
		require.True(t, plainAt(t, s, b, t0))

		// Decided without a read: even a binding the store does not
		// know is allowed when the ring says plain, and nothing counts.
		open := capped(t, 0, 0)
		d, err := s.TakeRing(ctx, callrec.Ring{BindingID: "b_nope", CallerKind: callrec.CallerAccount, Plain: true}, open, t0)
		require.NoError(t, err)
		require.Equal(t, protection.Allow, d.Verdict)
		night, err := protection.ParseWindow("21:00-08:00")
		require.NoError(t, err)
		quiet := open
		quiet.QuietHours = night
		d, ok := DecidePlain(callrec.Ring{BindingID: b.ID, Plain: true}, quiet, time.Date(2026, 11, 2, 22, 0, 0, 0, shanghai(t)))
		require.True(t, ok)
		require.Equal(t, protection.QuietHours, d.Verdict)
		// A cap counts a plain call all the same.
		_, ok = DecidePlain(callrec.Ring{BindingID: b.ID, Plain: true}, capped(t, 0, 1), t0)
		require.False(t, ok)
		plainRing := fromAccount(b)
		plainRing.Plain = true
		require.Equal(t, protection.Allow, verdict(t, s, plainRing, capped(t, 0, 1), t0))
		require.Equal(t, protection.Capped, verdict(t, s, plainRing, capped(t, 0, 1), t0))
		require.Equal(t, 1, rings(t, s))

		// A block of the consignee, whoever it is of, makes every binding
		// to them not plain, whichever merchant's; removing it lifts it.
		blk, err := s.AddBlock(ctx, b.ID, "13700137000", t0)
		require.NoError(t, err)
		require.False(t, plainAt(t, s, b, t0))
		require.False(t, plainAt(t, s, sameB, t0))
		require.True(t, plainAt(t, s, other, t0))
		require.NoError(t, s.RemoveBlock(ctx, blk.ID))
		require.True(t, plainAt(t, s, b, t0))

		// The merchant's own protection makes its bindings not plain.
		require.NoError(t, s.SetMerchantProtection(ctx, "m2", protection.Own{Record: true}, open))
		require.False(t, plainAt(t, s, other, t0))
		require.True(t, plainAt(t, s, b, t0))
		require.NoError(t, s.SetMerchantProtection(ctx, "m2", protection.Own{}, open))
		require.True(t, plainAt(t, s, other, t0))

		// A binding that takes no calls to its consignee is not plain.
		oneWay := shipped("o-4")
		oneWay.Consignee, oneWay.Calls = consigneeOther, string(callrec.CallsFromConsignee)
		b4, err := s.CreateBinding(ctx, oneWay, t0)
		require.NoError(t, err)
		require.False(t, plainAt(t, s, b4, t0))
	})
}
