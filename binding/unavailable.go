package binding

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
)

// Unavailable reports whether err means the store could not answer now,
// rather than that the request was wrong or the store is broken: a
// deadline passed, the connection to PostgreSQL was refused, lost or is
// being shut down, the server is out of resources (its disk full
// included), a lock was not had in time (PostgreSQL's lock_timeout,
// SQLite's busy timeout), a transaction lost a serialisation race, or
// SQLite's disk refuses writes: full, read-only (a file system remounted
// read-only after errors), or failing a write or sync. A caller may try again later
// (README "SIP behaviour in short": such a store gets new calls 503 with Retry-After); any other
// store error is a fault to log and look into.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),                           // insufficient resources: 53100 disk full, 53200 memory, 53300 connections
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutdown, crash, cannot connect now
			pe.Code == "55P03",                     // lock not available (lock_timeout)
			pe.Code == "40001", pe.Code == "40P01": // serialisation failure, deadlock
			return true
		}
		return false
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		return sqliteUnavailable(se)
	}
	return false
}

// sqliteUnavailable reports whether a SQLite error is a store that cannot
// answer now: a lock not had within the busy timeout, or a disk that
// refuses writes. SQLITE_FULL is a full disk (ENOSPC); SQLITE_READONLY,
// once serve has checked at start that it may write the file, is a file
// system gone read-only; of the I/O errors, those of writing, syncing,
// truncating and growing the WAL index are what a full or failing disk
// gives. Other I/O errors (reading, locking, a corrupt file system) are
// faults, logged as such.
func sqliteUnavailable(se sqlite3.Error) bool {
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrFull, sqlite3.ErrReadonly:
		return true
	case sqlite3.ErrIoErr:
		switch se.ExtendedCode {
		case sqlite3.ErrIoErrWrite, sqlite3.ErrIoErrFsync, sqlite3.ErrIoErrDirFsync, sqlite3.ErrIoErrTruncate,
			sqlite3.ErrIoErrSHMSize, sqlite3.ErrIoErrSHMMap, sqlite3.ErrIoErrMMap:
			return true
		}
	}
	return false
}
