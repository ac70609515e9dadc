package binding

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/internal/testwav"
	"github.com/vnum/vnum/protection"
)

// TestMerchantProtectionStore: a merchant's own protection is stored
// when no part of it is looser than the platform's, read back, and
// cleared by the zero value; a looser one is refused and nothing stored.
func TestMerchantProtectionStore(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s)
		ctx := context.Background()
		p := capped(t, 3, 10)
		p.Announce = protection.AnnounceInform

		own, err := s.MerchantProtection(ctx, "m1")
		require.NoError(t, err)
		require.Equal(t, protection.Own{}, own, "none of its own")

		lunch, err := protection.ParseWindow("12:00-14:00")
		require.NoError(t, err)
		want := protection.Own{QuietHours: lunch, CallsPerDay: 2, Announce: protection.AnnounceConfirm, Record: true}
		require.NoError(t, s.SetMerchantProtection(ctx, "m1", want, p))
		own, err = s.MerchantProtection(ctx, "m1")
		require.NoError(t, err)
		require.Equal(t, want, own)

		for _, looser := range []protection.Own{{CallsPerDay: 4}, {CallsPerBinding: 11},
			{Announce: protection.AnnounceOff}, {CallsPerDay: -1}} {
			err := s.SetMerchantProtection(ctx, "m1", looser, p)
			require.Error(t, err, "%+v", looser)
			require.True(t, isSentinel(err))
			own, err = s.MerchantProtection(ctx, "m1")
			require.NoError(t, err)
			require.Equal(t, want, own, "nothing stored")
		}

		require.NoError(t, s.SetMerchantProtection(ctx, "m1", protection.Own{}, p))
		own, err = s.MerchantProtection(ctx, "m1")
		require.NoError(t, err)
		require.Equal(t, protection.Own{}, own)

		require.ErrorIs(t, s.SetMerchantProtection(ctx, "m9", protection.Own{}, p), ErrNotFound)
		_, err = s.MerchantProtection(ctx, "m9")
		require.ErrorIs(t, err, ErrNotFound)
	})
}

// TestAnnouncementStore: a merchant's clip is checked, kept, replaced and
// removed; a clip refused leaves the one before in place.
func TestAnnouncementStore(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		seed(t, s)
		ctx := context.Background()
		_, ok, err := s.Announcement(ctx, "m1")
		require.NoError(t, err)
		require.False(t, ok)

		clip, err := s.SetAnnouncement(ctx, "m1", testwav.Clip(6, 16000))
		require.NoError(t, err)
		require.Equal(t, 2*time.Second, clip.Duration())
		got, ok, err := s.Announcement(ctx, "m1")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, clip, got)

		pcm, err := s.SetAnnouncement(ctx, "m1", testwav.Clip(1, 40000))
		require.NoError(t, err)
		require.Equal(t, protection.EncodingPCM, pcm.Encoding)
		for _, bad := range [][]byte{testwav.Clip(1, 40001), []byte("not a wav"), nil} {
			_, err := s.SetAnnouncement(ctx, "m1", bad)
			require.ErrorIs(t, err, protection.ErrBadClip)
		}
		got, _, err = s.Announcement(ctx, "m1")
		require.NoError(t, err)
		require.Equal(t, pcm, got, "the refused clips stored nothing")
		_, err = s.SetAnnouncement(ctx, "m9", testwav.Clip(7, 10))
		require.ErrorIs(t, err, ErrNotFound)

		require.NoError(t, s.RemoveAnnouncement(ctx, "m1"))
		_, ok, err = s.Announcement(ctx, "m1")
		require.NoError(t, err)
		require.False(t, ok)
		require.ErrorIs(t, s.RemoveAnnouncement(ctx, "m1"), ErrNotFound)
		require.ErrorIs(t, s.RemoveAnnouncement(ctx, "m9"), ErrNotFound)
	})
}

// TestRefusedCallsAreFree: a call protection refused or the consignee
// declined is never billed, even when the consignee answered the notice:
// it has no talk time, and the bill counts no call for it.
func TestRefusedCallsAreFree(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		clk := newClock(t0.Add(time.Hour))
		s, _ := be.open(t, clk.option())
		seed(t, s)
		ctx := context.Background()
		rates, err := ParseRates("0.02", "0")
		require.NoError(t, err)
		for i, d := range []callrec.Disposition{callrec.DispositionDeclined, callrec.DispositionBlocked,
			callrec.DispositionQuietHours, callrec.DispositionCapped, callrec.DispositionRestricted} {
			c := &callrec.Record{CallID: "refused-" + string(d), Merchant: "m1", Direction: callrec.DirectionToConsignee,
				StartedAt: t0.Add(time.Duration(i) * time.Minute)}
			require.NoError(t, s.StartCDR(ctx, c))
			if d == callrec.DispositionDeclined {
				c.AnsweredAt = c.StartedAt.Add(5 * time.Second) // B answered the notice
			}
			c.Disposition, c.EndedAt = d, c.StartedAt.Add(90*time.Second)
			require.NoError(t, s.FinishCDR(ctx, c, rates))
			require.Zero(t, c.TalkSeconds)
			require.Zero(t, c.Fee)
			got, err := s.GetCDR(ctx, c.ID)
			require.NoError(t, err)
			require.Equal(t, d, got.Disposition)
			require.Zero(t, got.BilledMinutes)
		}
		bill, err := s.Bill(ctx, "m1", "2026-11", time.UTC, rates, "CNY")
		require.NoError(t, err)
		require.Zero(t, bill.Calls)
		require.Zero(t, bill.Total)
	})
}
