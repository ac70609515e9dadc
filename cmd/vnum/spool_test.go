package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/internal/pgtest"
	"github.com/vnum/vnum/spool"
)

// TestSpooledEndsBeforeRecovery: a node that starts again writes the ends
// its spool kept before it closes its open rows as interrupted: the call
// whose end was spooled is billed as it ended (its real talk time), not
// closed at its last refresh, and has no leg left to hang up; the call
// whose end was lost with the process is interrupted and its legs are
// handed over to be hung up. The spool file is gone afterwards.
func TestSpooledEndsBeforeRecovery(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]func(t *testing.T) (string, string){
		"sqlite": func(t *testing.T) (string, string) {
			return binding.DriverSQLite, filepath.Join(t.TempDir(), "vnum.db")
		},
		"postgres": func(t *testing.T) (string, string) { return binding.DriverPostgres, pgtest.Shared(t).NewDatabase(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			driver, dsn := dsn(t)
			ctx := context.Background()
			rates := binding.Rates{PerMinute: 20000}
			t0 := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
			s, err := binding.Open(ctx, driver, dsn, binding.WithNode("vnum-a"))
			require.NoError(t, err)
			legs := callrec.Legs{A: `{"a":1}`, B: `{"b":1}`}
			open := func(callID string) callrec.Record {
				c := callrec.Record{CallID: callID, Merchant: "m1", Host: "17000000001", Direction: callrec.DirectionToConsignee,
					StartedAt: t0, AnsweredAt: t0.Add(2 * time.Second)}
				require.NoError(t, s.StartCDR(ctx, &c))
				require.NoError(t, s.UpdateCDR(ctx, &c, legs))
				require.NoError(t, s.RefreshCDR(ctx, &c, t0.Add(12*time.Second), rates))
				return c
			}
			spooled, lost := open("spooled@a"), open("lost@a")
			require.NoError(t, s.Close())

			dir := t.TempDir()
			sp, err := spool.Open(dir, "vnum-a")
			require.NoError(t, err)
			end := spooled
			end.EndedAt = t0.Add(97 * time.Second) // 95 s of talk: 2 minutes
			end.Disposition, end.HangupBy, end.SIPStatus = callrec.DispositionAnswered, callrec.HangupCaller, 200
			require.NoError(t, sp.Put(end))
			require.NoError(t, sp.Close()) // the process stops in the outage

			s2, err := binding.Open(ctx, driver, dsn, binding.WithNode("vnum-a"))
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s2.Close()) })
			next, err := spool.Open(dir, "vnum-a")
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, next.Close()) })
			lease, gotLegs, err := takeLease(ctx, s2, "vnum-a", next, rates, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, lease.Release(ctx)) })
			require.Equal(t, map[string]callrec.Legs{lost.ID: legs}, gotLegs, "only the interrupted call's legs")

			got, err := s2.GetCDR(ctx, spooled.ID)
			require.NoError(t, err)
			require.Equal(t, callrec.DispositionAnswered, got.Disposition)
			require.Equal(t, 95, got.TalkSeconds)
			require.Equal(t, 2, got.BilledMinutes)
			require.Equal(t, "0.04000", got.Fee.String())
			got, err = s2.GetCDR(ctx, lost.ID)
			require.NoError(t, err)
			require.Equal(t, callrec.DispositionInterrupted, got.Disposition)
			require.Equal(t, 10, got.TalkSeconds, "the talk known at its last refresh")
			_, err = os.Stat(next.Path())
			require.ErrorIs(t, err, os.ErrNotExist, "every spooled end written: the spool is gone")
		})
	}
}

// TestUnwritableSpoolRefused: a serve whose spool directory cannot be
// made refuses to start, in one line naming store.spool, before it
// touches the store.
func TestUnwritableSpoolRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-a-dir")
	require.NoError(t, os.WriteFile(blocker, nil, 0o600))
	c := config.Default()
	c.SIP.Listen = []string{"udp://127.0.0.1:0"}
	c.Store.DSN = filepath.Join(dir, "vnum.db")
	c.Store.Spool = filepath.Join(blocker, "spool")
	c.Trunk.Outbound = "sip:127.0.0.1:9;transport=udp"
	_, err := startNodeWith(context.Background(), c, slog.New(slog.DiscardHandler), true, nil)
	require.ErrorContains(t, err, "store.spool: ")
	require.ErrorContains(t, err, "set store.spool to a directory of this node's own")
	_, err = os.Stat(c.Store.DSN)
	require.ErrorIs(t, err, os.ErrNotExist, "the store is not even created")
}
