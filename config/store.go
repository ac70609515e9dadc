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
