package binding

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// legsOf reads the dialogs a row keeps, "" for none.
func legsOf(t *testing.T, s *Store, id string) callrec.Legs {
	t.Helper()
	var a, b sql.NullString
	require.NoError(t, s.db.QueryRowContext(context.Background(), `SELECT leg_a, leg_b FROM cdrs WHERE id = ?`, id).Scan(&a, &b))
	return callrec.Legs{A: a.String, B: b.String}
}

// TestLegsKeptWhileOpen: the dialogs of a call's legs are kept with its
// open row, in no listing or export of it, and forgotten when the row
// ends, by its own call or by the node's next start, which returns those
// of the calls it closed so that their legs can be hung up.
func TestLegsKeptWhileOpen(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, dsn := be.open(t, WithNode("vnum-a"))
		seed(t, s)
		ctx := context.Background()
		rates := Rates{PerMinute: 20000}
		// The consignee's number is in leg B's dialog, as it is on the wire.
		legs := callrec.Legs{A: `{"leg":"a","from":"<sip:alice@10.0.0.5>;tag=x"}`,
			B: `{"leg":"b","to":"<sip:13800138000@203.0.113.10>;tag=y"}`}
		start := func(callID string) *callrec.Record {
			c := &callrec.Record{CallID: callID, Merchant: "m1", Host: "17000000001", Extension: "1234",
				Direction: callrec.DirectionToConsignee, Caller: "alice", CallerKind: callrec.CallerAccount, StartedAt: t0}
			require.NoError(t, s.StartCDR(ctx, c))
			return c
		}

		ended := start("ended@a")
		ended.AnsweredAt = t0.Add(2 * time.Second)
		require.NoError(t, s.UpdateCDR(ctx, ended, callrec.Legs{A: legs.A}))
		require.Equal(t, callrec.Legs{A: legs.A}, legsOf(t, s, ended.ID), "leg A answered first (IVR)")
		require.NoError(t, s.UpdateCDR(ctx, ended, legs))
		require.Equal(t, legs, legsOf(t, s, ended.ID))
		require.NoError(t, s.RefreshCDR(ctx, ended, t0.Add(12*time.Second), rates))
		require.Equal(t, legs, legsOf(t, s, ended.ID), "a refresh keeps them")

		// Nothing merchants read carries them.
		rows, err := s.ListCDRs(ctx, "m1", time.Time{}, time.Time{})
		require.NoError(t, err)
		require.Len(t, rows, 1)
		out, err := json.Marshal(rows)
		require.NoError(t, err)
		require.NotContains(t, string(out), "13800138000")
		require.NotContains(t, strings.Join(rows[0].Row(), ","), "13800138000")

		ended.EndedAt = t0.Add(70 * time.Second)
		require.NoError(t, s.FinishCDR(ctx, ended, rates))
		require.Equal(t, callrec.Legs{}, legsOf(t, s, ended.ID), "an ended call has no legs")

		crashed := start("crashed@a")
		crashed.AnsweredAt = t0.Add(3 * time.Second)
		require.NoError(t, s.UpdateCDR(ctx, crashed, legs))
		unanswered := start("ringing@a") // no leg up: nothing to hang up
		require.NoError(t, s.Close())

		s2, err := Open(ctx, be.driver, dsn, WithNode("vnum-a"))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s2.Close()) })
		lease, err := s2.TakeLease(ctx, Holder{Host: "h", PID: 2}, LeaseOptions{})
		require.NoError(t, err)
		rec, err := lease.RecoverInterrupted(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 2, rec.Closed)
		require.Equal(t, map[string]callrec.Legs{crashed.ID: legs}, rec.Legs)
		require.Equal(t, callrec.Legs{}, legsOf(t, s2, crashed.ID), "the closed row forgets them")
		got, err := s2.GetCDR(ctx, unanswered.ID)
		require.NoError(t, err)
		require.Equal(t, callrec.DispositionInterrupted, got.Disposition)

		// A second start finds nothing left to close or hang up.
		require.NoError(t, lease.Release(ctx))
		lease, err = s2.TakeLease(ctx, Holder{Host: "h", PID: 3}, LeaseOptions{})
		require.NoError(t, err)
		rec, err = lease.RecoverInterrupted(ctx)
		require.NoError(t, err)
		require.Zero(t, rec.Closed)
		require.Empty(t, rec.Legs)
	})
}
