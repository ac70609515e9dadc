package binding

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"

	"github.com/vnum/vnum/config"
)

// Realm is the SIP digest realm of every account; HA1 values depend on it.
const Realm = "vnum"

// Store drivers accepted by Open.
const (
	// DriverSQLite is the embedded SQLite store.
	DriverSQLite = "sqlite"
	// DriverPostgres is the PostgreSQL store, which several nodes can share.
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
	policy    Policy
	mustExist bool
	created   *bool
	clock     func() time.Time
	node      string
	busy      time.Duration
}

// ReportCreated makes Open set *created to true when the store it opened
// was new and empty (no vnum schema yet: a file that did not exist, or an
// empty one), so that the caller can say so rather than work silently on a
// store the operator did not mean (README "Running vnum").
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
// starts carry it, and its lease (TakeLease) is that node's.
func WithNode(id string) Option { return func(o *options) { o.node = id } }

// DefaultBusyTimeout is how long a write waits for a lock (SQLite's write
// lock, a PostgreSQL lock another node holds) when WithBusyTimeout is not
// given.
const DefaultBusyTimeout = 10 * time.Second

// WithBusyTimeout bounds how long one write waits for a lock: SQLite's
// write lock (another process, a long transaction), or on PostgreSQL a
// lock another node holds (lock_timeout, unless the DSN sets it). SQLite's
// wait does not end with the caller's context, so a server passes
// store.timeout here: then a locked file fails a write within
// store.timeout, and the call that needed it is refused at once instead
// of waiting for the lock.
func WithBusyTimeout(d time.Duration) Option { return func(o *options) { o.busy = d } }

// MustExist makes Open refuse, with ErrNoStore, a store that holds no vnum
// schema yet (a SQLite file that does not exist or is empty, a PostgreSQL
// database without vnum's tables), and create nothing. Commands that only
// read use it: they have nothing to show from a store the operator did
// not mean, and must not leave one behind.
func MustExist() Option { return func(o *options) { o.mustExist = true } }

// Store is vnum's database: merchants, accounts, the number pool, bindings,
// CDRs and registrations. It keeps no cached copy of any row, so changes
// made by another process on the same database (the CLI while `vnum serve`
// runs, another node on a shared PostgreSQL) take effect at once. A Store
// is safe for concurrent use.
type Store struct {
	db     *db
	policy Policy
	clock  func() time.Time
	node   string // node.id: stamped on the CDR rows this store starts
}

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// Open opens the store and applies pending migrations. It leaves the CDR
// rows of calls in progress alone: only the holder of a node's lease
// closes the rows a crash of that node left open (TakeLease, then
// Lease.RecoverInterrupted).
//
// For sqlite the DSN is a file name (or ":memory:"); WAL mode, foreign
// keys, a busy timeout and immediate transactions are added to it. For
// postgres it is a URL, postgres://user:password@host:5432/db?sslmode=disable,
// or libpq's keyword form (host=db user=vnum ...); several nodes may share
// one PostgreSQL database. Both have the same schema and rules.
func Open(ctx context.Context, driver, dsn string, opts ...Option) (*Store, error) {
	o := options{policy: DefaultPolicy()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.policy.ExtensionDigits < 1 || o.policy.ExtensionDigits > 9 || o.policy.TTL <= 0 || o.policy.Quarantine < 0 {
		return nil, fmt.Errorf("%w policy %+v", ErrInvalid, o.policy)
	}
	var open func(context.Context, string, options) (*Store, bool, error)
	switch driver {
	case DriverSQLite, "sqlite3":
		open = openSQLite
	case DriverPostgres:
		open = openPostgres
	default:
		return nil, fmt.Errorf("%w store driver %q: want sqlite or postgres", ErrInvalid, driver)
	}
	if strings.TrimSpace(dsn) == "" {
		return nil, fmt.Errorf("%w store dsn: empty", ErrInvalid)
	}
	s, created, err := open(ctx, dsn, o)
	if err != nil {
		return nil, err
	}
	if o.created != nil {
		*o.created = created
	}
	return s, nil
}

// openSQLite opens and migrates a SQLite store; created reports a file
// that had no vnum schema yet.
func openSQLite(ctx context.Context, dsn string, o options) (*Store, bool, error) {
	file := config.SQLitePath(dsn)
	if file != "" {
		if o.mustExist {
			if fi, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Size() == 0) {
				return nil, false, fmt.Errorf("sqlite file %q: %w", file, ErrNoStore)
			}
		}
		// SQLite's own error for a file it may not write is "attempt to
		// write a readonly database", or "unable to open database file"
		// for a directory it cannot make its -wal and -shm files in: the
		// operator needs to know whose the file is instead.
		if err := checkWritable(file); err != nil {
			return nil, false, err
		}
	}
	sqldb, err := sql.Open("sqlite3", sqliteDSN(dsn, o.busy))
	if err != nil {
		return nil, false, fmt.Errorf("sqlite file %q: %w", dsn, err)
	}
	memory := strings.Contains(dsn, ":memory:")
	if memory {
		// Every connection to :memory: would be a separate empty database.
		sqldb.SetMaxOpenConns(1)
	} else {
		// database/sql keeps two idle connections by default and opens
		// as many as are asked for: under load nearly every query opened
		// and closed a SQLite connection (42 % of the CPU at 500 calls/s).
		// A bounded pool that keeps its connections makes concurrent
		// queries wait for one instead.
		sqldb.SetMaxOpenConns(sqlitePoolSize)
		sqldb.SetMaxIdleConns(sqlitePoolSize)
		sqldb.SetConnMaxIdleTime(0)
		sqldb.SetConnMaxLifetime(0)
	}
	// The first statement is what opens (and, when missing, creates) the
	// file: its failure is the operator's path, not a migration.
	var schemas int
	if err := sqldb.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master
		WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&schemas); err != nil {
		var se sqlite3.Error
		if errors.As(err, &se) && se.Code == sqlite3.ErrCantOpen {
			return nil, false, closeAfter(sqldb, fmt.Errorf("cannot open sqlite file %q: %w (its directory must exist and be writable)", dsn, err))
		}
		return nil, false, closeAfter(sqldb, fmt.Errorf("cannot open sqlite file %q: %w", dsn, err))
	}
	if schemas == 0 && o.mustExist {
		return nil, false, closeAfter(sqldb, fmt.Errorf("sqlite file %q: %w", cmp.Or(file, dsn), ErrNoStore))
	}
	s := &Store{db: &db{DB: sqldb, dialect: sqliteDialect, writer: make(chan struct{}, 1)}, policy: o.policy,
		clock: o.clock, node: o.node}
	if err := s.migrate(ctx); err != nil {
		return nil, false, closeAfter(sqldb, fmt.Errorf("sqlite file %q: %w", dsn, err))
	}
	if err := s.db.prepare(ctx, slices.Concat(hotQueries, outboxQueries(s.db.dialect))); err != nil {
		return nil, false, closeAfter(sqldb, fmt.Errorf("sqlite file %q: %w", dsn, err))
	}
	s.db.group = newGroupWriter(s.db)
	return s, schemas == 0 && !memory, nil
}

// pgPoolSize is how many PostgreSQL connections a store keeps open: enough
// for the concurrent calls of a node, few enough that several nodes stay
// well under the server's max_connections (100 by default).
const pgPoolSize = 16

// openPostgres opens and migrates a PostgreSQL store; created reports a
// database that had no vnum schema yet. Its errors name the DSN with the
// password masked.
func openPostgres(ctx context.Context, dsn string, o options) (*Store, bool, error) {
	shown := config.MaskURL(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx masks the password of the DSN it quotes, but not every
		// form; its message is replaced by one that names ours.
		return nil, false, fmt.Errorf("%w postgres dsn %s: want postgres://user:password@host:5432/db?sslmode=disable", ErrInvalid, shown)
	}
	// A lock held elsewhere (another node's allocation, a migration) is
	// waited for at most the busy timeout, like SQLite's busy_timeout;
	// the caller's context bounds every operation too.
	if _, set := cfg.RuntimeParams["lock_timeout"]; !set {
		busy := o.busy
		if busy <= 0 {
			busy = DefaultBusyTimeout
		}
		cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(max(busy.Milliseconds(), 1), 10)
	}
	sqldb := stdlib.OpenDB(*cfg)
	sqldb.SetMaxOpenConns(pgPoolSize)
	sqldb.SetMaxIdleConns(pgPoolSize)
	// Connections are renewed now and then, so a node follows a server
	// fail-over or restart without keeping stale ones for ever.
	sqldb.SetConnMaxLifetime(30 * time.Minute)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	var schemas int
	if err := sqldb.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_name = 'schema_migrations'`).Scan(&schemas); err != nil {
		return nil, false, closeAfter(sqldb, oneLine(fmt.Errorf("cannot reach postgres %s: %w", shown, err)))
	}
	if schemas == 0 && o.mustExist {
		return nil, false, closeAfter(sqldb, fmt.Errorf("postgres %s: %w", shown, ErrNoStore))
	}
	s := &Store{db: &db{DB: sqldb, dialect: postgresDialect}, policy: o.policy, clock: o.clock, node: o.node}
	if err := s.migrate(ctx); err != nil {
		return nil, false, closeAfter(sqldb, oneLine(fmt.Errorf("postgres %s: %w", shown, err)))
	}
	if err := s.db.prepare(ctx, slices.Concat(hotQueries, outboxQueries(s.db.dialect))); err != nil {
		return nil, false, closeAfter(sqldb, oneLine(fmt.Errorf("postgres %s: %w", shown, err)))
	}
	return s, schemas == 0, nil
}

// oneLineError is an error whose message is kept on one line; it wraps
// the original error for errors.Is and errors.As.
type oneLineError struct {
	msg string
	err error
}

func (e *oneLineError) Error() string { return e.msg }
func (e *oneLineError) Unwrap() error { return e.err }

// oneLine joins the lines of err's message with "; " (a space after a
// colon): pgx lists each
// address it tried on a line of its own, and a command that cannot open
// its store says so in one line (README "Running vnum").
func oneLine(err error) error {
	msg := err.Error()
	if !strings.Contains(msg, "\n") {
		return err
	}
	var b strings.Builder
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(l)
	}
	return &oneLineError{msg: b.String(), err: err}
}

func closeAfter(db *sql.DB, err error) error {
	if cerr := db.Close(); cerr != nil {
		return fmt.Errorf("%w (closing: %v)", err, cerr)
	}
	return err
}

// sqlitePoolSize is how many SQLite connections a store keeps open: WAL
// lets readers run beside the one writer, and more connections than cores
// only add lock contention.
const sqlitePoolSize = 8

// sqliteDSN adds the connection parameters vnum relies on, unless the DSN
// already sets them: WAL so readers never block the writer, foreign keys,
// a busy timeout for when the CLI and the server write at once, and
// BEGIN IMMEDIATE so an allocation transaction holds the write lock from
// its first read.
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
func (s *Store) Close() error { return s.db.close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// migrationDir is where the migrations of a dialect are embedded. Both
// sets have the same version numbers: version n is the same schema step
// in either database.
func (d dialect) migrationDir() string {
	if d == postgresDialect {
		return "migrations/postgres"
	}
	return "migrations/sqlite"
}

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, all in one transaction that first takes the
// migration lock: two nodes starting at once against an empty database
// do not both apply them, the second finds them recorded. SQLite files
// made when the migrations lay directly in migrations/ have the same
// versions recorded and go on from there.
func (s *Store) migrate(ctx context.Context) error {
	dir := s.db.dialect.migrationDir()
	names, err := fs.Glob(migrations, dir+"/*.sql")
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	sort.Strings(names)
	return s.tx(ctx, func(tx *txn) error {
		if err := tx.dialect.lock(ctx, tx, migrateLock); err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("store: migrations table: %w", err)
		}
		for _, name := range names {
			base := path.Base(name)
			num := strings.SplitN(base, "_", 2)[0]
			version, err := strconv.Atoi(num)
			if err != nil {
				return fmt.Errorf("store: migration %s: bad version prefix", base)
			}
			body, err := migrations.ReadFile(name)
			if err != nil {
				return fmt.Errorf("store: migration %s: %w", base, err)
			}
			if err := s.apply(ctx, tx, version, base, string(body)); err != nil {
				return fmt.Errorf("store: migration %s: %w", base, err)
			}
		}
		return nil
	})
}

// apply runs one migration inside tx unless its version is recorded.
func (s *Store) apply(ctx context.Context, tx *txn, version int, name, body string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	// Sent without arguments, so that a file of several statements runs
	// as one batch (PostgreSQL's simple query protocol).
	if _, err := tx.Tx.ExecContext(ctx, body); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		version, name, s.Now().UnixNano())
	return err
}

// SchemaVersion returns the highest applied migration version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return int(v.Int64), nil
}

// tx runs fn in a write transaction (BEGIN IMMEDIATE on sqlite, READ
// COMMITTED on postgres, where fn takes the locks it needs) and commits it, or rolls it back when fn or the commit fails.
func (s *Store) tx(ctx context.Context, fn func(*txn) error) error {
	tx, err := s.db.begin(ctx)
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

// text stores a string, the empty string as NULL.
func text(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}
