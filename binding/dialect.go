package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
)

// dialect is the SQL flavour of a store's database. The queries are
// written once, in the SQL both databases share, with ? placeholders; the
// dialect says how they are sent and how the database is locked.
type dialect int

const (
	sqliteDialect dialect = iota
	postgresDialect
)

// Advisory lock keys (PostgreSQL): any constant the application owns. The
// digits spell "vnum" on a phone keypad.
const (
	// migrateLock is held by the transaction that applies migrations, so
	// that nodes starting together against an empty database do not both
	// create the schema.
	migrateLock int64 = 8686_0001
	// allocLock is held by every transaction that allocates (X, E), so that
	// creates on several nodes see each other's bindings (README "Bindings": distance
	// two between live extensions of a host).
	allocLock int64 = 8686_0002
)

// rebound caches the PostgreSQL form of each query, which is built once.
var rebound sync.Map // string -> string

// rebind returns query with its ? placeholders in the dialect's form:
// unchanged for SQLite, $1..$n for PostgreSQL. A ? inside a quoted string
// or identifier is left alone; vnum's queries hold no other ? (no SQL
// parser is needed for them).
func (d dialect) rebind(query string) string {
	if d != postgresDialect || !strings.Contains(query, "?") {
		return query
	}
	if q, ok := rebound.Load(query); ok {
		return q.(string)
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	q := b.String()
	rebound.Store(query, q)
	return q
}

// lock makes tx wait for the named lock until it ends. On SQLite every
// write transaction already holds the database's one write lock from its
// first statement (BEGIN IMMEDIATE), which serialises them the same way.
func (d dialect) lock(ctx context.Context, tx *txn, key int64) error {
	if d != postgresDialect {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, key)
	return err
}

// forUpdate is the clause that makes a SELECT in a write transaction
// lock the rows it reads until the transaction ends: FOR UPDATE on
// PostgreSQL. SQLite needs none: its write transaction holds the
// database's one write lock from its first statement.
func (d dialect) forUpdate() string {
	if d == postgresDialect {
		return " FOR UPDATE"
	}
	return ""
}

// ringLockClass is the first key of the PostgreSQL advisory locks that
// serialise the calls about to ring one consignee (TakeRing); the second
// is a hash of the consignee. Two-key advisory locks are a space apart
// from the one-key locks above, so the hash never meets them.
const ringLockClass int32 = 8686

// lockConsignee makes tx wait until it is the only transaction counting
// calls to consignee, on any node: on PostgreSQL an advisory lock on a
// hash of the number (two numbers that share a hash only wait for each
// other); on SQLite the transaction's write lock already does it.
func (d dialect) lockConsignee(ctx context.Context, tx *txn, consignee string) error {
	if d != postgresDialect {
		return nil
	}
	key := int32(crc32.ChecksumIEEE([]byte(consignee)))
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?, ?)`, ringLockClass, key)
	return err
}

// hotQueries are the statements a call runs (README "SIP behaviour in short" and "CDRs and billing"): the lookups of
// an INVITE and of its caller's account, the writes of its record, and
// consignee protection's look before the consignee rings.
// Open prepares them once per store; without that, database/sql has the
// driver prepare every statement on every Exec or Query, and SQLite spent
// much of a call's store time in sqlite3_prepare.
var hotQueries = []string{
	isHostQuery, accountQuery, resolveQuery,
	startCDRQuery, updateCDRQuery, updateCDRSameQuery, refreshCDRQuery, finishCDRQuery, finishCDRSameQuery, cdrEndedQuery,
	takeRingQuery,
}

// db is the store's connection pool; its queries are written with ?
// placeholders and rebound for the dialect. The queries it has prepared
// run as prepared statements, others are prepared by the driver for each
// use.
type db struct {
	*sql.DB
	dialect dialect
	// prepared holds the prepared statements by their text as written.
	// It is filled by prepare at Open and not changed afterwards, so it
	// is read without a lock. database/sql prepares each statement again,
	// once, on every connection that runs it and keeps it there.
	prepared map[string]*sql.Stmt
	// writer is held by this process's write in progress on SQLite (nil
	// on PostgreSQL): see lockWrite.
	writer chan struct{}
	// group runs the single writes on SQLite (nil on PostgreSQL): see
	// groupWriter.
	group *groupWriter
}

// lockWrite waits until this process has no other write in progress on
// SQLite, or ctx ends, and returns the function that lets the next one
// go (once, however often it is called). SQLite has one writer per
// database, and a connection that finds the write lock taken does not
// queue for it: its busy handler sleeps 1, 2, 5, 10 ... 100 ms and tries
// again, and whoever comes meanwhile may take the lock first. A call's
// write that met the delivery workers' transaction (or another call's
// write) thus waited long after the lock was free, up to a hundred
// milliseconds under load. Writers of one process queue here instead, in
// turn, and each goes on as soon as the one before it ends; the busy
// handler is left for other processes (the CLI) writing to the same
// file. PostgreSQL locks rows, not the database, and needs none.
func (d *db) lockWrite(ctx context.Context) (func(), error) {
	if d.writer == nil {
		return func() {}, nil
	}
	select {
	case d.writer <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-d.writer }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// prepare prepares queries for the life of the pool.
func (d *db) prepare(ctx context.Context, queries []string) error {
	d.prepared = make(map[string]*sql.Stmt, len(queries))
	for _, q := range queries {
		st, err := d.DB.PrepareContext(ctx, d.dialect.rebind(q))
		if err != nil {
			return fmt.Errorf("store: prepare %q: %w", strings.Join(strings.Fields(q), " "), err)
		}
		d.prepared[q] = st
	}
	return nil
}

// close closes the prepared statements, then the pool.
func (d *db) close() error {
	if d.group != nil {
		d.group.close()
	}
	var errs []error
	for _, st := range d.prepared {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, d.DB.Close())...)
}

// ExecContext runs a statement written with ? placeholders. It is the
// store's way to write outside a transaction: on SQLite in the group
// writer's next transaction (see groupWriter), elsewhere at once.
func (d *db) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if d.group != nil {
		return d.group.exec(ctx, query, args)
	}
	unlock, err := d.lockWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return d.execNow(ctx, query, args)
}

// execNow runs a statement on its own, lockWrite held by the caller.
func (d *db) execNow(ctx context.Context, query string, args []any) (sql.Result, error) {
	if st := d.prepared[query]; st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.DB.ExecContext(ctx, d.dialect.rebind(query), args...)
}

// QueryContext runs a query written with ? placeholders.
func (d *db) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.prepared[query]; st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.DB.QueryContext(ctx, d.dialect.rebind(query), args...)
}

// QueryRowContext runs a one-row query written with ? placeholders.
func (d *db) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.prepared[query]; st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.DB.QueryRowContext(ctx, d.dialect.rebind(query), args...)
}

// begin starts a write transaction, holding lockWrite until its end.
func (d *db) begin(ctx context.Context) (*txn, error) {
	unlock, err := d.lockWrite(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := d.DB.BeginTx(ctx, nil)
	if err != nil {
		unlock()
		return nil, err
	}
	return &txn{Tx: tx, dialect: d.dialect, prepared: d.prepared, unlock: unlock}, nil
}

// txn is a transaction whose queries are written with ? placeholders. The
// pool's prepared statements run in it through Tx.StmtContext, which
// reuses the statement already prepared on the transaction's connection.
type txn struct {
	*sql.Tx
	dialect  dialect
	prepared map[string]*sql.Stmt
	unlock   func() // lets the process's next write go (lockWrite)
}

// Commit commits the transaction and lets the next write go.
func (t *txn) Commit() error {
	defer t.unlock()
	return t.Tx.Commit()
}

// Rollback rolls the transaction back and lets the next write go.
func (t *txn) Rollback() error {
	defer t.unlock()
	return t.Tx.Rollback()
}

// ExecContext runs a statement written with ? placeholders.
func (t *txn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.prepared[query]; st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, t.dialect.rebind(query), args...)
}

// QueryContext runs a query written with ? placeholders.
func (t *txn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.prepared[query]; st != nil {
		return t.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, t.dialect.rebind(query), args...)
}

// QueryRowContext runs a one-row query written with ? placeholders.
func (t *txn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.prepared[query]; st != nil {
		return t.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, t.dialect.rebind(query), args...)
}

// pgUniqueViolation is PostgreSQL's SQLSTATE unique_violation.
const pgUniqueViolation = "23505"

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation, in
// either database.
func isUnique(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgUniqueViolation
}
