package binding

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// answered records an answered call to the consignee of binding id.
func answered(t *testing.T, s *Store, id, callID, caller string, kind callrec.CallerKind, at time.Time) {
	t.Helper()
	require.NoError(t, s.StartCDR(context.Background(), &callrec.Record{CallID: callID, Merchant: "m1", BindingID: id,
		Direction: callrec.DirectionToConsignee, Caller: caller, CallerKind: kind,
		StartedAt: at, AnsweredAt: at.Add(time.Second)}))
}

// callbackStore opens a store with users as merchant m1's accounts and a
// binding of order o-1 to consignee 13800138000 made at t0.
func callbackStore(t *testing.T, be backend, users ...string) (*Store, *Binding) {
	t.Helper()
	s, _ := be.open(t)
	seed(t, s, "17000000001")
	ctx := context.Background()
	for _, u := range users {
		require.NoError(t, s.AddAccount(ctx, "m1", u, "correct horse"))
	}
	b, err := s.CreateBinding(ctx, shipped("o-1"), t0)
	require.NoError(t, err)
	return s, b
}

func TestResolveCallback(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, b := callbackStore(t, be, "alice", "bob")
		ctx := context.Background()
		now := t0.Add(time.Hour)

		cb, err := s.ResolveCallback(ctx, b.Host, "013800138000"[1:], now)
		require.NoError(t, err)
		require.Equal(t, b.Target(), cb.Target)
		require.Equal(t, callrec.Callback{Target: b.Target(), Accounts: []string{"alice", "bob"}}, cb,
			"nobody called yet: the merchant's accounts ring")

		answered(t, s, b.ID, "x", "alice", callrec.CallerAccount, now)
		cb, err = s.ResolveCallback(ctx, "+86"+b.Host, "+8613800138000", now.Add(time.Minute))
		require.NoError(t, err)
		require.Equal(t, callrec.Callback{Target: b.Target(), Account: "alice"}, cb)

		answered(t, s, b.ID, "y", "+8613700137000", callrec.CallerNumber, now.Add(2*time.Minute))
		cb, err = s.ResolveCallback(ctx, b.Host, "13800138000", now.Add(3*time.Minute))
		require.NoError(t, err)
		require.Equal(t, callrec.Callback{Target: b.Target(), Number: "+8613700137000"}, cb)

		_, err = s.ResolveCallback(ctx, b.Host, "13900139000", now)
		require.ErrorIs(t, err, ErrNoBinding)
		_, err = s.ResolveCallback(ctx, b.Host, "13800138000", b.ExpiresAt)
		require.ErrorIs(t, err, ErrNoBinding)
	})
}

// TestCallbackByStoredKind: the call back reaches the last caller as what
// it was, by the kind its record holds, never by what the string looks
// like. A PSTN caller whose number is also an account's user name is
// dialled as a number, and an account whose user name is a phone number
// is rung as an account.
func TestCallbackByStoredKind(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, b := callbackStore(t, be, "+8613700137000", "13600136000")
		ctx := context.Background()
		now := t0.Add(time.Hour)

		answered(t, s, b.ID, "pstn", "+8613700137000", callrec.CallerNumber, now)
		cb, err := s.ResolveCallback(ctx, b.Host, "13800138000", now.Add(time.Minute))
		require.NoError(t, err)
		require.Equal(t, "+8613700137000", cb.Number, "the PSTN caller is dialled on the trunk")
		require.Empty(t, cb.Account, "not the account of the same name")

		answered(t, s, b.ID, "acct", "13600136000", callrec.CallerAccount, now.Add(2*time.Minute))
		cb, err = s.ResolveCallback(ctx, b.Host, "13800138000", now.Add(3*time.Minute))
		require.NoError(t, err)
		require.Equal(t, "13600136000", cb.Account, "the account is rung where it registered")
		require.Empty(t, cb.Number)

		got, err := s.GetCDR(ctx, mustCDRID(t, s, "acct"))
		require.NoError(t, err)
		require.Equal(t, callrec.CallerAccount, got.CallerKind, "the kind is stored with the row")
	})
}

// mustCDRID returns the id of the CDR with the given Call-ID.
func mustCDRID(t *testing.T, s *Store, callID string) string {
	t.Helper()
	var id string
	require.NoError(t, s.db.QueryRowContext(context.Background(), `SELECT id FROM cdrs WHERE call_id = ?`, callID).Scan(&id))
	return id
}

// TestLastCallerIsDialable: a call back dials the last caller, so a record
// whose caller has no kind, or does not have the shape of its kind (an
// unvalidated From user written before callers were checked, or none), is
// passed over.
func TestLastCallerIsDialable(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		s, b := callbackStore(t, be)
		ctx := context.Background()
		now := t0.Add(time.Hour)
		rows := []struct {
			caller string
			kind   callrec.CallerKind
		}{
			{"+8613700137000", callrec.CallerNumber},
			{"13900000002;x=1?X-Injected=evil", callrec.CallerNumber},
			{"a\r\nb", callrec.CallerAccount},
			{"", callrec.CallerNumber},
			{"+8613900139000", callrec.CallerUnknown},
			{"consignee", callrec.CallerConsignee},
		}
		for i, r := range rows {
			answered(t, s, b.ID, "c"+string(rune('0'+i)), r.caller, r.kind, now.Add(time.Duration(i)*time.Minute))
		}
		cb, err := s.ResolveCallback(ctx, b.Host, "13800138000", now.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, "+8613700137000", cb.Number, "the latest caller that can be dialled")
	})
}

// TestCallerKindMigration: rows written before the kind was stored get it
// once, when the store is opened by this version: an account's user is an
// account, a phone number a number, a call back the consignee, and
// anything else no kind, which a call back never dials.
func TestCallerKindMigration(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) { callerKindMigration(t, be) })
}

func callerKindMigration(t *testing.T, be backend) {
	ctx := context.Background()
	dsn := be.newDSN(t)
	d, sqlDriver := sqliteDialect, "sqlite3"
	if be.driver == DriverPostgres {
		d, sqlDriver = postgresDialect, "pgx"
	}
	raw, err := sql.Open(sqlDriver, dsn)
	require.NoError(t, err)
	db := &db{DB: raw, dialect: d}
	_, err = db.ExecContext(ctx, `CREATE TABLE schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`)
	require.NoError(t, err)
	for i, name := range []string{"0001_init.sql", "0002_cdr_alive.sql"} {
		body, err := migrations.ReadFile(d.migrationDir() + "/" + name)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, string(body))
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, ?, 0)`, i+1, name)
		require.NoError(t, err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO merchants VALUES ('m1', 'Shop One', 0);
		INSERT INTO accounts VALUES ('alice', 'm1', '', '', 0), ('13600136000', 'm1', '', '', 0)`)
	require.NoError(t, err)
	old := map[string]struct {
		caller, direction string
		want              callrec.CallerKind
	}{
		"account":         {"alice", "to_consignee", callrec.CallerAccount},
		"numeric account": {"13600136000", "to_consignee", callrec.CallerAccount},
		"e164":            {"+8613700137000", "to_consignee", callrec.CallerNumber},
		"national":        {"13700137000", "to_consignee", callrec.CallerNumber},
		"gone account":    {"carol", "to_consignee", callrec.CallerUnknown},
		"injected":        {"13900000002;x=1", "to_consignee", callrec.CallerUnknown},
		"landline shape":  {"+86-10-1234", "to_consignee", callrec.CallerUnknown},
		"none":            {"", "to_consignee", callrec.CallerUnknown},
		"consignee calls": {"consignee", "callback", callrec.CallerConsignee},
	}
	for id, r := range old {
		_, err = db.ExecContext(ctx, `INSERT INTO cdrs (id, call_id, merchant, binding_id, order_id, host, extension,
			direction, caller, started_at) VALUES (?, ?, 'm1', '', '', '', '', ?, ?, 0)`, id, id, r.direction, r.caller)
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())

	s, err := Open(ctx, be.driver, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	for id, r := range old {
		got, err := s.GetCDR(ctx, id)
		require.NoError(t, err)
		require.Equal(t, r.want, got.CallerKind, "%s: caller %q", id, r.caller)
	}
}
