package binding

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/internal/pgtest"
)

// callPath runs the store calls of one call on s, as signalling makes
// them, and checks their results: the INVITE's lookups, the caller's
// account, then the record from start to end, and the refusals of an
// update that changes no row.
func callPath(t *testing.T, s *Store, b *Binding) {
	t.Helper()
	ctx := context.Background()
	ok, err := s.IsHostNumber(ctx, b.Host)
	require.NoError(t, err)
	require.True(t, ok)
	a, err := s.Account(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, "m1", a.Merchant)
	got, err := s.Resolve(ctx, b.Host, b.Extension, "m1", t0)
	require.NoError(t, err)
	require.Equal(t, b.ID, got.ID)

	rates, err := ParseRates("0.02", "0.00018")
	require.NoError(t, err)
	c := &callrec.Record{CallID: "call-1", Host: b.Host, Direction: callrec.DirectionToConsignee, Caller: "alice", StartedAt: t0}
	require.NoError(t, s.StartCDR(ctx, c))
	// The binding learnt (a new merchant and binding: the full update),
	// then the answer and the end (the same ones: the narrow updates).
	c.BindingID, c.Merchant, c.Order, c.Extension = b.ID, "m1", b.Order, b.Extension
	require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{}))
	row, err := s.GetCDR(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, b.ID, row.BindingID)
	require.Equal(t, "m1", row.Merchant)
	c.AnsweredAt = t0.Add(time.Second)
	require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{}))
	require.NoError(t, s.RefreshCDR(ctx, c, t0.Add(31*time.Second), rates))
	c.EndedAt = t0.Add(61 * time.Second)
	require.NoError(t, s.FinishCDR(ctx, c, rates))
	require.ErrorIs(t, s.FinishCDR(ctx, c, rates), ErrCDRFinished)
	require.ErrorIs(t, s.RefreshCDR(ctx, c, t0.Add(70*time.Second), rates), ErrCDRFinished)
	require.ErrorIs(t, s.FinishCDR(ctx, &callrec.Record{ID: "c_0000000000000000", EndedAt: t0}, rates), ErrNotFound)
	require.ErrorIs(t, s.UpdateCDR(ctx, &callrec.Record{ID: "c_0000000000000000"}, callrec.Legs{}), ErrNotFound)
	row, err = s.GetCDR(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, 60, row.TalkSeconds)
	require.Equal(t, 1, row.BilledMinutes)
	require.Equal(t, b.ID, row.BindingID)
	require.True(t, row.AnsweredAt.Equal(c.AnsweredAt))
	byMerchant, err := s.ListCDRs(ctx, "m1", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, byMerchant, 1, "listed by its merchant (the index the update left alone)")

	// A record whose binding is learnt only as it ends: the full finish.
	d := &callrec.Record{CallID: "call-2", Host: b.Host, Direction: callrec.DirectionToConsignee, Caller: "alice", StartedAt: t0}
	require.NoError(t, s.StartCDR(ctx, d))
	d.BindingID, d.Merchant, d.EndedAt = b.ID, "m1", t0.Add(5*time.Second)
	require.NoError(t, s.FinishCDR(ctx, d, rates))
	row, err = s.GetCDR(ctx, d.ID)
	require.NoError(t, err)
	require.Equal(t, b.ID, row.BindingID)
	require.Equal(t, "m1", row.Merchant)
	require.False(t, row.EndedAt.IsZero())
	require.ErrorIs(t, s.FinishCDR(ctx, d, rates), ErrCDRFinished)
}

// openCallStore opens a store on driver and dsn with merchant m1, its account alice,
// one host number and one binding on it.
func openCallStore(t *testing.T, driver, dsn string) (*Store, *Binding) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, driver, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	seed(t, s, "17000000001")
	require.NoError(t, s.AddAccount(ctx, "m1", "alice", "secret-password"))
	b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
	require.NoError(t, err)
	return s, b
}

// TestHotPathPrepared: every statement of a call's path is prepared once
// at Open and the call runs through them; on PostgreSQL the session
// holds each as a statement prepared by the store, not only in pgx's
// implicit statement cache.
func TestHotPathPrepared(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, b := openCallStore(t, be.driver, be.newDSN(t))
		for _, q := range hotQueries {
			require.NotNil(t, s.db.prepared[q], "not prepared: %s", q)
		}
		// One connection, so that the session asked below is the one
		// the call ran on.
		s.db.SetMaxOpenConns(1)
		callPath(t, s, b)
		if be.driver != DriverPostgres {
			return
		}
		// pgx names the statements of its implicit per-connection cache
		// stmtcache_…, and those prepared through database/sql stmt_….
		rows, err := s.db.QueryContext(context.Background(), `SELECT statement FROM pg_prepared_statements
			WHERE name NOT LIKE 'stmtcache%'`)
		require.NoError(t, err)
		defer rows.Close()
		prepared := map[string]bool{}
		for rows.Next() {
			var q string
			require.NoError(t, rows.Scan(&q))
			prepared[q] = true
		}
		require.NoError(t, rows.Err())
		for _, q := range hotQueries {
			require.True(t, prepared[s.db.dialect.rebind(q)], "not a prepared statement of the session: %s", q)
		}
	})
}

// TestPreparedAfterRestart: the prepared statements outlive the
// connections they were prepared on. After PostgreSQL restarts, which
// breaks every connection of the pool, the same Store runs a whole call
// again (database/sql prepares them anew on the new connections).
func TestPreparedAfterRestart(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t) // its own server: restarting it must not hit other tests
	s, b := openCallStore(t, DriverPostgres, srv.NewDatabase(t))
	callPath(t, s, b)
	require.NoError(t, srv.Restart())
	// As in TestPostgresOutage, each broken connection may fail one call.
	ctx := context.Background()
	for failed := 0; ; failed++ {
		_, err := s.Resolve(ctx, b.Host, b.Extension, "m1", t0)
		if err == nil {
			break
		}
		require.Less(t, failed, pgPoolSize, "the store did not come back: %v", err)
	}
	_, err := s.db.ExecContext(ctx, `DELETE FROM cdrs`)
	require.NoError(t, err)
	callPath(t, s, b)
}

// TestPreparedInTransaction: a prepared statement run inside a
// transaction runs in it (Tx.StmtContext), on its connection: it sees the
// transaction's own uncommitted rows, which a statement on another
// connection of the pool would not.
func TestPreparedInTransaction(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, _ := be.open(t)
		ctx := context.Background()
		require.NotNil(t, s.db.prepared[isHostQuery])
		var n int
		err := s.tx(ctx, func(tx *txn) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO numbers (host, ext_check, created_at) VALUES (?, ?, ?)`,
				"17000000009", 3, t0.UnixNano()); err != nil {
				return err
			}
			return tx.QueryRowContext(ctx, isHostQuery, "17000000009").Scan(&n)
		})
		require.NoError(t, err)
		require.Equal(t, 1, n, "the statement ran outside the transaction")
	})
}
