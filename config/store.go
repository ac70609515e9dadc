package config

import (
	"path/filepath"
	"strings"
)

// SQLitePath returns the file a SQLite store.dsn names: the DSN without
// its "file:" prefix and its "?param=..." part. It returns "" for an
// in-memory database.
func SQLitePath(dsn string) string {
	p, _, _ := strings.Cut(dsn, "?")
	p = strings.TrimPrefix(p, "file:")
	if p == "" || strings.Contains(p, ":memory:") {
		return ""
	}
	return p
}

// resolveStoreDSN takes a relative SQLite store.dsn from the directory of
// the configuration file when the DSN comes from the file, or is the
// default and a file is given: `vnum --config /etc/vnum/vnum.yaml` finds
// the same store whatever directory it runs in. The result is absolute. A
// DSN from VNUM_STORE_DSN (fromEnv), or the default without a file, is
// left as it is, relative to the working directory as a shell's relative
// path is.
// Absolute paths, in-memory databases and PostgreSQL DSNs are left alone.
func (c *Config) resolveStoreDSN(file string, fromEnv bool) error {
	if c.Store.Driver != DriverSQLite || file == "" || fromEnv {
		return nil
	}
	path := SQLitePath(c.Store.DSN)
	if path == "" || filepath.IsAbs(path) {
		return nil
	}
	abs, err := filepath.Abs(filepath.Join(filepath.Dir(file), path))
	if err != nil {
		return err
	}
	prefix := ""
	if strings.HasPrefix(c.Store.DSN, "file:") {
		prefix = "file:"
	}
	c.Store.DSN = prefix + abs + strings.TrimPrefix(c.Store.DSN, prefix+path)
	return nil
}

// resolveSpool takes a relative store.spool from the directory of the
// configuration file when it comes from the file, as resolveStoreDSN does
// for store.dsn.
func (c *Config) resolveSpool(file string, fromEnv bool) error {
	return resolveFromFile(&c.Store.Spool, file, fromEnv)
}

// resolveFromFile makes the relative path *p of a key absolute, taken
// from the directory of the configuration file when a file is given and
// the key does not come from the environment (fromEnv), where a relative
// path is the shell's. An empty or absolute path is left alone.
func resolveFromFile(p *string, file string, fromEnv bool) error {
	if *p == "" || file == "" || fromEnv || filepath.IsAbs(*p) {
		return nil
	}
	abs, err := filepath.Abs(filepath.Join(filepath.Dir(file), *p))
	if err != nil {
		return err
	}
	*p = abs
	return nil
}

// SpoolDir is the directory of the node's spool (store.spool), where the
// ends of calls the store did not take wait across a restart: the key
// when set; else beside a SQLite store, in its file's directory, which
// vnum must be able to write anyway; else (PostgreSQL, or an in-memory
// SQLite) the directory of the configuration file given (file), or
// without one the working directory.
func (s Store) SpoolDir(file string) string {
	if s.Spool != "" {
		return s.Spool
	}
	if s.Driver == DriverSQLite {
		if p := SQLitePath(s.DSN); p != "" {
			return filepath.Dir(p)
		}
	}
	if file != "" {
		if abs, err := filepath.Abs(filepath.Dir(file)); err == nil {
			return abs
		}
		return filepath.Dir(file)
	}
	return "."
}
