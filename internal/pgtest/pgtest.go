// Package pgtest starts a throwaway PostgreSQL server for tests: the real
// database, in a temporary directory, listening on 127.0.0.1 only. One
// server serves a whole test binary (Shared); each test gets a fresh
// database of its own on it (NewDatabase, DSN), so tests stay isolated and
// can run in parallel.
//
// The server's programs come from PATH or from /usr/lib/postgresql/*/bin,
// where Debian's package postgresql installs them without putting them in
// PATH. Without them the tests that need PostgreSQL are skipped, unless
// VNUMTEST_REQUIRE_POSTGRES=1 (CI) makes that a failure.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/vnum/vnum/internal/testenv"
	"github.com/vnum/vnum/internal/testport"
)

// RequireEnv is the environment variable that turns a missing PostgreSQL
// into a test failure instead of a skip, when set to "1" (testenv.Require
// also honours the older VNUM_REQUIRE_ name).
const RequireEnv = "VNUMTEST_REQUIRE_POSTGRES"

// ErrNoPostgres reports that the PostgreSQL server programs (initdb,
// postgres) are not installed, or cannot be run here.
var ErrNoPostgres = errors.New("PostgreSQL server programs not found (install Debian's package postgresql)")

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 60 * time.Second

// Server is a PostgreSQL server in a temporary directory. Its superuser
// is postgres, who connects without a password (trust) over 127.0.0.1.
type Server struct {
	bin  string // the directory of initdb and postgres
	dir  string // the temporary directory: data, socket, log
	port int    // the TCP port on 127.0.0.1
	// lease is the port's, held while no postmaster runs; started
	// tells that DSNs naming the port are out, so it must not change.
	lease   *testport.Lease
	started bool
	cred    *syscall.Credential // the postgres OS user when the tests run as root

	mu      sync.Mutex
	cmd     *exec.Cmd     // the running postmaster, or nil
	exited  chan struct{} // closed when cmd has exited
	waitErr error         // cmd's exit status, once exited is closed
	admin   *sql.DB       // a pool on the postgres database, for CREATE DATABASE

	seq atomic.Int64 // numbers the databases NewDatabase makes
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Shared returns the test binary's server, starting it on first use. When
// PostgreSQL is not installed it skips the test (fails it when
// VNUMTEST_REQUIRE_POSTGRES=1); a server that is installed but does not start
// fails the test.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = New() })
	if errors.Is(sharedErr, ErrNoPostgres) {
		SkipOrFail(t, sharedErr)
	}
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

// Start starts a server of t's own, stopped and removed when the test
// ends, for a package without a TestMain calling Main (or a test that
// must not share its server). Like Shared, it skips when PostgreSQL is not
// installed.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	if errors.Is(err, ErrNoPostgres) {
		SkipOrFail(t, err)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// DSN returns the DSN of a fresh, empty database on the shared server,
// dropped when the test ends.
func DSN(t testing.TB) string {
	t.Helper()
	return Shared(t).NewDatabase(t)
}

// SkipOrFail skips t because of err, or fails it when VNUMTEST_REQUIRE_POSTGRES=1.
func SkipOrFail(t testing.TB, err error) {
	t.Helper()
	if testenv.Require("POSTGRES") {
		t.Fatalf("pgtest: %v (%s=1 requires PostgreSQL)", err, RequireEnv)
	}
	t.Skipf("pgtest: %v", err)
}

// Main runs the tests of a package that uses Shared and stops the shared
// server afterwards. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Without it the server still ends with the test binary (it gets SIGQUIT
// when its parent dies), but its temporary directory stays behind.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}
	os.Exit(code)
}

// New initialises a database cluster in a new temporary directory and
// starts a server on it. It returns an error wrapping ErrNoPostgres when
// the programs are missing. Close stops it and removes the directory.
func New() (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: running as root needs the OS user postgres, which the package creates: %v", ErrNoPostgres, err)
		}
		uid, uerr := strconv.ParseUint(u.Uid, 10, 32)
		gid, gerr := strconv.ParseUint(u.Gid, 10, 32)
		if uerr != nil || gerr != nil {
			return nil, fmt.Errorf("pgtest: user postgres: uid %q gid %q", u.Uid, u.Gid)
		}
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if s.dir, err = os.MkdirTemp("", "vnum-pgtest-"); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := s.initdb(); err != nil {
		return nil, errors.Join(err, os.RemoveAll(s.dir))
	}
	if err := s.Start(); err != nil {
		return nil, errors.Join(err, os.RemoveAll(s.dir))
	}
	return s, nil
}

// debianBins is where Debian's postgresql packages put the server
// programs, one directory per major version.
var debianBins = "/usr/lib/postgresql/*/bin"

// findBin returns the directory that holds initdb and postgres: PATH's,
// else the newest /usr/lib/postgresql/<version>/bin.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob(debianBins)
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		_, ierr := os.Stat(filepath.Join(dir, "initdb"))
		_, perr := os.Stat(filepath.Join(dir, "postgres"))
		if ierr == nil && perr == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: no initdb in PATH or /usr/lib/postgresql/*/bin", ErrNoPostgres)
}

// version is the major version in /usr/lib/postgresql/<version>/bin.
func version(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return v
}

func (s *Server) data() string    { return filepath.Join(s.dir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.dir, "postgres.log") }

// command returns name of the server's programs set up to run as the
// postgres OS user when needed, writing into the log.
func (s *Server) command(log *os.File, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	// The test's working directory may not be readable by postgres.
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = log, log
	// SIGQUIT is PostgreSQL's immediate shutdown: a test binary that dies
	// takes its server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	return cmd
}

// initdb creates the cluster: superuser postgres, trusted, UTF-8, C
// locale (so that no result depends on the machine's locale).
func (s *Server) initdb() error {
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	log, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer log.Close()
	cmd := s.command(log, "initdb", "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, s.logTail())
	}
	return nil
}

// logTail returns the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Port returns the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// DSNOf returns the URL of database db on the server, as user postgres.
func (s *Server) DSNOf(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Start starts the server (again, after Stop) and returns once it accepts
// connections. The first start leases a port (internal/testport: below
// the kernel's ephemeral range, in a block no other test process uses,
// held by this process until the postmaster starts); when the postmaster
// finds it taken after all, it starts again on a fresh one. Later starts
// reuse the port, so that DSNs handed out before stay valid; it stays
// leased meanwhile, and held where it can be (not while connections of
// the stopped server linger in TIME_WAIT on it).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if s.lease == nil {
			if s.lease, err = testport.Take(1); err != nil {
				return fmt.Errorf("pgtest: %w", err)
			}
			s.port = s.lease.First
		}
		s.lease.Unhold()
		if portLetGo != nil {
			portLetGo(s.port)
		}
		if err = s.start(); err == nil || !errors.Is(err, errPortTaken) {
			return err
		}
		if s.started {
			// DSNs name this port: wait for whoever took it to let go
			// (stop held it again if it could).
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		} else {
			s.lease.Free()
			s.lease = nil
		}
	}
	return err
}

// errPortTaken is the postmaster's report that its port is in use.
var errPortTaken = errors.New("port already in use")

// portLetGo, when set (by this package's tests), runs between the moment
// Start lets go of the port and the postmaster's start: where another
// process could take it.
var portLetGo func(port int)

// start runs the postmaster; s.mu is held.
func (s *Server) start() error {
	log, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer log.Close()
	logStart, err := log.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	// A throwaway server need not survive a machine crash: fsync=off makes
	// it fast. It must survive its own immediate stop (an outage test), so
	// commits are still written out (synchronous_commit stays on). The
	// unix socket stays in the temporary directory, away from the
	// system's /var/run/postgresql.
	cmd := s.command(log, "postgres", "-D", s.data(), "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+s.dir,
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "log_min_messages=warning")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	if err := s.waitReady(exited); err != nil {
		_ = s.stop()
		if b, rerr := os.ReadFile(s.logPath()); rerr == nil && int64(len(b)) > logStart &&
			strings.Contains(string(b[logStart:]), "Address already in use") {
			return fmt.Errorf("pgtest: postgres on 127.0.0.1:%d: %w", s.port, errPortTaken)
		}
		return err
	}
	s.started = true
	return nil
}

// waitReady waits until the server accepts a connection, it exits, or
// startTimeout passes.
func (s *Server) waitReady(exited chan struct{}) error {
	cfg, err := pgx.ParseConfig(s.DSNOf("postgres") + "&connect_timeout=1")
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := pgx.ConnectConfig(context.Background(), cfg)
		if err == nil {
			return conn.Close(context.Background())
		}
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited (%v)\n%s", s.waitErr, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres did not accept connections within %s: %w\n%s", startTimeout, err, s.logTail())
		}
	}
}

// Stop stops the server at once, the way a crash or an outage would: the
// postmaster, by its PID, gets SIGQUIT (pg_ctl stop -m immediate), and
// every open connection breaks. Start brings it back with the same data.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop()
}

// stop stops the postmaster; s.mu is held.
func (s *Server) stop() error {
	if s.cmd == nil {
		return nil
	}
	if s.admin != nil {
		// Its connections die with the server.
		_ = s.admin.Close()
		s.admin = nil
	}
	err := s.cmd.Process.Signal(syscall.SIGQUIT)
	<-s.exited
	s.cmd = nil
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pgtest: stop postgres: %w", err)
	}
	// Until the next Start, the port is held again, unless the server's
	// closed connections linger on it (TIME_WAIT); it stays leased anyway.
	_ = s.lease.Hold()
	return nil
}

// Restart stops the server at once and starts it again.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Close stops the server, gives its port back and removes its directory.
func (s *Server) Close() error {
	err := s.Stop()
	s.mu.Lock()
	if s.lease != nil {
		s.lease.Free()
		s.lease = nil
	}
	s.mu.Unlock()
	return errors.Join(err, os.RemoveAll(s.dir))
}

// NewDatabase creates an empty database on the server and returns its
// DSN; the database is dropped when the test ends (if the server is up).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	admin, err := s.adminDB()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := fmt.Sprintf("vnum_%d_%d", os.Getpid(), s.seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if admin, err := s.adminDB(); err == nil {
			_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		}
	})
	return s.DSNOf(name)
}

// adminDB returns a pool on the postgres database, opened once per start.
func (s *Server) adminDB() (*sql.DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil, errors.New("server is stopped")
	}
	if s.admin == nil {
		cfg, err := pgx.ParseConfig(s.DSNOf("postgres"))
		if err != nil {
			return nil, err
		}
		s.admin = stdlib.OpenDB(*cfg)
		s.admin.SetMaxOpenConns(4)
	}
	return s.admin, nil
}

// String describes the server for logs.
func (s *Server) String() string {
	return fmt.Sprintf("postgres %s on 127.0.0.1:%d (%s)", strings.TrimSuffix(s.bin, "/bin"), s.port, s.dir)
}
