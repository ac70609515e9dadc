package binding

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Realm is the SIP digest realm of every account; HA1 values depend on it.
const Realm = "vnum"

// Store drivers accepted by Open.
const (
	// DriverSQLite is the embedded SQLite store.
	DriverSQLite = "sqlite"
	// DriverPostgres is the PostgreSQL store, not built into this version.
	DriverPostgres = "postgres"
)

// Policy holds the binding rules that come from configuration.
type Policy struct {
	// TTL is a binding's lifetime when the request names none (binding.ttl).
	TTL time.Duration
	// Quarantine is how long an ended (X, E) stays out of use (binding.quarantine).
	Quarantine time.Duration
	// ExtensionDigits is the length of new extensions (ivr.extension_digits).
	ExtensionDigits int
}

// DefaultPolicy returns the policy of the configuration defaults.
func DefaultPolicy() Policy {
	return Policy{TTL: 720 * time.Hour, Quarantine: 2160 * time.Hour, ExtensionDigits: 4}
}

// Option configures Open.
type Option func(*options)

type options struct {
	policy  Policy
	recover bool
	created *bool
	clock   func() time.Time
	node    string
	busy    time.Duration
}

// ReportCreated makes Open set *created to true when the store it opened
// was new and empty (no vnum schema yet: a file that did not exist, or an
// empty one), so that the caller can say so rather than work silently on a
// store the operator did not mean (SPEC §2).
func ReportCreated(created *bool) Option { return func(o *options) { o.created = created } }

// WithPolicy sets the binding policy; without it Open uses DefaultPolicy.
func WithPolicy(p Policy) Option { return func(o *options) { o.policy = p } }

// WithClock sets the clock the store reads whenever it needs the time:
// billing counts only the binding-days begun by now, and records without a
// time of their own are stamped with it. Without it the store uses
// time.Now; tests pass a fixed clock so that no result depends on today's
// date.
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// WithNode names the node that uses the store (node.id): the CDR rows it
// starts carry it, and the rows a crash left open that RecoverInterrupted
// closes are only its own.
func WithNode(id string) Option { return func(o *options) { o.node = id } }

// DefaultBusyTimeout is how long a write waits for SQLite's write lock
// when WithBusyTimeout is not given.
const DefaultBusyTimeout = 10 * time.Second

// WithBusyTimeout bounds how long one SQLite write waits for the database's
// write lock (another process, a long transaction). SQLite's wait does not
// end with the caller's context, so a server passes store.timeout here:
// then a locked file fails a write within store.timeout, and the call that
// needed it is refused at once instead of waiting for the lock.
func WithBusyTimeout(d time.Duration) Option { return func(o *options) { o.busy = d } }

// WithoutRecovery makes Open leave unfinished CDR rows alone. Short-lived
// tools (the CLI) use it: they open the store while `vnum serve` runs, and
// the rows of its calls in progress are not left over from a crash.
func WithoutRecovery() Option { return func(o *options) { o.recover = false } }

// Store is vnum's database: merchants, accounts, the number pool, bindings
// and CDRs. It keeps no cached copy of any row, so changes made by another
// process on the same database (the CLI while `vnum serve` runs) take effect
// at once. A Store is safe for concurrent use.
type Store struct {
	db     *sql.DB
	policy Policy
	clock  func() time.Time
	node   string // node.id: stamped on the CDR rows this store starts
}

//go:embed migrations/*.sql
var migrations embed.FS

// Open opens the store, applies pending migrations and, unless
// WithoutRecovery is given, closes CDR rows that a crash left open
// (disposition "interrupted", see RecoverInterrupted). For sqlite the DSN is a file
// name (or ":memory:"); WAL mode, foreign keys, a busy timeout and
// immediate transactions are added to it.
func Open(ctx context.Context, driver, dsn string, opts ...Option) (*Store, error) {
	o := options{policy: DefaultPolicy(), recover: true}
	for _, opt := range opts {
		opt(&o)
	}
	if o.policy.ExtensionDigits < 1 || o.policy.ExtensionDigits > 9 || o.policy.TTL <= 0 || o.policy.Quarantine < 0 {
		return nil, fmt.Errorf("%w policy %+v", ErrInvalid, o.policy)
	}
	switch driver {
	case DriverSQLite, "sqlite3":
	case DriverPostgres:
		return nil, fmt.Errorf("store: postgres %w", ErrUnsupportedDriver)
	default:
		return nil, fmt.Errorf("%w store driver %q: want sqlite or postgres", ErrInvalid, driver)
	}
	if strings.TrimSpace(dsn) == "" {
		return nil, fmt.Errorf("%w store dsn: empty", ErrInvalid)
	}
	db, err := sql.Open("sqlite3", sqliteDSN(dsn, o.busy))
	if err != nil {
		return nil, fmt.Errorf("sqlite file %q: %w", dsn, err)
	}
	memory := strings.Contains(dsn, ":memory:")
	if memory {
		// Every connection to :memory: would be a separate empty database.
		db.SetMaxOpenConns(1)
	} else {
		// database/sql keeps two idle connections by default and opens
		// as many as are asked for: under load nearly every query opened
		// and closed a SQLite connection (42 % of the CPU at 500 calls/s).
		// A bounded pool that keeps its connections makes concurrent
		// queries wait for one instead.
		db.SetMaxOpenConns(sqlitePoolSize)
		db.SetMaxIdleConns(sqlitePoolSize)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
	}
	// The first statement is what opens (and, when missing, creates) the
	// file: its failure is the operator's path, not a migration.
	var schemas int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master
		WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&schemas); err != nil {
		var se sqlite3.Error
		if errors.As(err, &se) && se.Code == sqlite3.ErrCantOpen {
			return nil, closeAfter(db, fmt.Errorf("cannot open sqlite file %q: %w (its directory must exist and be writable)", dsn, err))
		}
		return nil, closeAfter(db, fmt.Errorf("cannot open sqlite file %q: %w", dsn, err))
	}
	s := &Store{db: db, policy: o.policy, clock: o.clock, node: o.node}
	if err := s.migrate(ctx); err != nil {
		return nil, closeAfter(db, fmt.Errorf("sqlite file %q: %w", dsn, err))
	}
	if o.created != nil {
		*o.created = schemas == 0 && !memory
	}
	if o.recover {
		if _, err := s.RecoverInterrupted(ctx); err != nil {
			return nil, closeAfter(db, err)
		}
	}
	return s, nil
}

func closeAfter(db *sql.DB, err error) error {
	if cerr := db.Close(); cerr != nil {
		return fmt.Errorf("%w (closing: %v)", err, cerr)
	}
	return err
}

// sqliteDSN adds the connection parameters vnum relies on, unless the DSN
// already sets them: WAL so readers never block the writer, foreign keys,
// a busy timeout for when the CLI and the server write at once, and
// BEGIN IMMEDIATE so an allocation transaction holds the write lock from
// its first read.
// sqlitePoolSize is how many SQLite connections a store keeps open: WAL
// lets readers run beside the one writer, and more connections than cores
// only add lock contention.
const sqlitePoolSize = 8

func sqliteDSN(dsn string, busy time.Duration) string {
	if busy <= 0 {
		busy = DefaultBusyTimeout
	}
	params := []string{
		fmt.Sprintf("_busy_timeout=%d", max(busy.Milliseconds(), 1)),
		"_foreign_keys=on",
		"_txlock=immediate",
		"_synchronous=NORMAL",
	}
	if !strings.Contains(dsn, ":memory:") {
		params = append(params, "_journal_mode=WAL")
	}
	for _, p := range params {
		name := strings.SplitN(p, "=", 2)[0]
		if strings.Contains(dsn, name+"=") {
			continue
		}
		if strings.Contains(dsn, "?") {
			dsn += "&" + p
		} else {
			dsn += "?" + p
		}
	}
	return dsn
}

// Now returns the time on the store's clock (see WithClock).
func (s *Store) Now() time.Time {
	if s.clock == nil {
		return time.Now()
	}
	return s.clock()
}

// Policy returns the binding policy the store applies.
func (s *Store) Policy() Policy { return s.policy }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrations table: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		num := strings.SplitN(base, "_", 2)[0]
		version, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("store: migration %s: bad version prefix", base)
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", base, err)
		}
		if err := s.apply(ctx, version, base, string(body)); err != nil {
			return fmt.Errorf("store: migration %s: %w", base, err)
		}
	}
	return nil
}

func (s *Store) apply(ctx context.Context, version int, name, body string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, body); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			version, name, s.Now().UnixNano())
		return err
	})
}

// SchemaVersion returns the highest applied migration version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return int(v.Int64), nil
}

// tx runs fn in a write transaction (BEGIN IMMEDIATE on sqlite) and
// commits it, or rolls it back when fn or the commit fails.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return fmt.Errorf("%w (rollback: %v)", err, rerr)
		}
		return err
	}
	return tx.Commit()
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation.
func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) &&
		(se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}

// ns stores a time as Unix nanoseconds, the zero time as NULL.
func ns(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

// fromNS reads a time stored by ns, in UTC.
func fromNS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.Unix(0, v.Int64).UTC()
}
