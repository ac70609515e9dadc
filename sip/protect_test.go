package sip

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/protection"
)

// protectingStore is the fake store with consignee protection: every
// call gets decision, and the blocks the consignee makes are noted.
type protectingStore struct {
	*fakeRouter
	decision protection.Decision
	rings    chan callrec.Ring
	blocks   chan string
}

func (s *protectingStore) TakeRing(_ context.Context, r callrec.Ring) (protection.Decision, error) {
	s.rings <- r
	return s.decision, nil
}

func (s *protectingStore) BlockCaller(_ context.Context, id, call string, kind callrec.CallerKind, caller string) (bool, error) {
	s.blocks <- id + "/" + call + "/" + string(kind) + "/" + caller
	return true, nil
}

func (s *protectingStore) Announcement(context.Context, string) ([]int16, error) { return nil, nil }

// newProtectedEnv is a script env whose store decides d for every call.
func newProtectedEnv(t *testing.T, d protection.Decision) (*scriptEnv, *protectingStore) {
	t.Helper()
	var store *protectingStore
	e := newScriptEnv(t, answers, func(r *fakeRouter) Router {
		store = &protectingStore{fakeRouter: r, decision: d, rings: make(chan callrec.Ring, 4), blocks: make(chan string, 4)}
		return store
	}, nil)
	return e, store
}

// TestScriptProtectionRefuses: a call consignee protection refuses is
// never dialled to B: the caller hears the refusal's prompt as early
// media and gets its status, never a 2xx; the record has the refusal's
// disposition and the count its reason. Blocked sounds like declined.
func TestScriptProtectionRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		verdict protection.Verdict
		code    int
		prompt  string
	}{
		{protection.QuietHours, 480, media.PromptQuietHours},
		{protection.Capped, 480, media.PromptCapped},
		{protection.Blocked, 603, media.PromptNotAvailable},
		{protection.Restricted, 403, media.PromptNotAvailable},
	} {
		t.Run(tc.verdict.String(), func(t *testing.T) {
			t.Parallel()
			e, store := newProtectedEnv(t, protection.Decision{Verdict: tc.verdict, Reason: "a test"})
			sc := e.call(testHost + "-" + testExt)
			ring := <-store.rings
			require.Equal(t, callrec.Ring{BindingID: "b1", CallerKind: callrec.CallerAccount, Caller: "alice", CDR: ring.CDR}, ring)
			cdr := e.router.waitEnded(t)
			sc.ended(t)
			require.Equal(t, tc.verdict.Disposition(), cdr.Disposition)
			require.Equal(t, tc.code, cdr.SIPStatus)
			require.True(t, cdr.AnsweredAt.IsZero())
			res := sc.a.final()
			require.NotNil(t, res)
			require.Equal(t, tc.code, res.StatusCode)
			require.Zero(t, sc.a.answered())
			require.Empty(t, e.dialer.forks, "B never rings")
			require.True(t, e.media.stream(t, 0).heard(t, tc.prompt))
			require.EqualValues(t, 1, e.deps.protected.byReason()[tc.verdict.String()])
		})
	}
}

// TestScriptRecordedNotice: a recorded call with announce confirm tells
// the caller it is recorded only once B has taken it (1), ringback until
// then: a caller B declines (2) or blocks (9) never hears that B
// answered, only that the consignee is not available.
func TestScriptRecordedNotice(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"1", "2", "9"} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			e, _ := newProtectedEnv(t, protection.Decision{Verdict: protection.Allow,
				Policy: protection.Policy{Announce: protection.AnnounceConfirm, ConfirmTimeout: 10 * time.Second, Record: true}})
			e.deps.recordings = &recordings{mode: config.RecordMerchant, dir: t.TempDir()}
			sc := e.call(testHost + "-" + testExt)
			e.dialer.fork(t)
			sc.state(t, StateNotice)
			e.media.stream(t, 1).key(key)
			if key == "1" {
				sc.state(t, StateBridged)
				require.True(t, e.media.stream(t, 0).heard(t, media.PromptRecorded), "told before the bridge")
				sc.a.hangUp()
			}
			cdr := e.router.waitEnded(t)
			sc.ended(t)
			if key == "1" {
				require.True(t, cdr.Recorded)
				return
			}
			require.Equal(t, callrec.DispositionDeclined, cdr.Disposition)
			require.False(t, e.media.stream(t, 0).heard(t, media.PromptRecorded),
				"a caller B declined was never told the call is recorded: B's answer stays hidden")
			require.True(t, e.media.stream(t, 0).heard(t, media.PromptNotAvailable))
		})
	}
}

// TestScriptConfirmKeys: with announce confirm, B answers and hears the
// notice in state notice while the caller is not answered; 1 bridges and
// the call is answered from then; 2 declines with 603; 9 blocks the
// caller and declines with the same 603.
func TestScriptConfirmKeys(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"1", "2", "9"} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			e, store := newProtectedEnv(t, protection.Decision{Verdict: protection.Allow,
				Policy: protection.Policy{Announce: protection.AnnounceConfirm, ConfirmTimeout: 10 * time.Second}})
			sc := e.call(testHost + "-" + testExt)
			e.dialer.fork(t)
			sc.state(t, StateNotice)
			require.Zero(t, sc.a.answered(), "the caller waits for B's key")
			notified := time.Now()
			e.media.stream(t, 1).key(key)
			if key == "1" {
				sc.state(t, StateBridged)
				require.Equal(t, 1, sc.a.answered())
				sc.a.hangUp()
			}
			cdr := e.router.waitEnded(t)
			sc.ended(t)
			if key == "1" {
				require.Equal(t, callrec.DispositionAnswered, cdr.Disposition)
				require.False(t, cdr.AnsweredAt.Before(notified), "answered at the bridge, after the notice")
				return
			}
			require.Equal(t, callrec.DispositionDeclined, cdr.Disposition)
			require.Equal(t, 603, sc.a.final().StatusCode)
			require.True(t, cdr.AnsweredAt.IsZero(), "a declined call is not answered")
			require.True(t, e.media.stream(t, 0).heard(t, media.PromptNotAvailable))
			if key == "9" {
				require.NotEmpty(t, cdr.ID)
				require.Equal(t, "b1/"+cdr.ID+"/account/alice", <-store.blocks, "the block names the call's record")
			}
		})
	}
}
