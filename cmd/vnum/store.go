package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/config"
)

// openStore opens the configured store with the configured binding policy
// as this node (node.id), creating it when it does not exist. It is for
// the long-running server, which then takes the node's lease (takeLease);
// one-shot commands use openCLIStore or createCLIStore. When the store is
// new and empty it calls created (nil for the demo's temporary store).
func openStore(ctx context.Context, c *config.Config, created func(dsn string)) (*binding.Store, error) {
	return openConfigured(ctx, c, created, binding.WithPolicy(policyOf(c)), binding.WithNode(nodeID(c)),
		binding.WithBusyTimeout(c.Store.Timeout))
}

// nodeID is this node's name in CDRs and the name of its lease: node.id,
// or the host name when it is empty.
func nodeID(c *config.Config) string {
	if c.Node.ID != "" {
		return c.Node.ID
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "vnum"
}

// openCLIStore opens an existing store for a one-shot command, and
// refuses one that does not exist yet, creating nothing: a mistyped
// store.dsn, or a command run without --config, must not leave an empty
// store behind. It leaves open CDR rows alone: they may belong to calls
// of a `vnum serve` running now.
func openCLIStore(ctx context.Context, c *config.Config) (*binding.Store, error) {
	return openConfigured(ctx, c, nil, binding.WithPolicy(policyOf(c)), binding.MustExist())
}

// createCLIStore opens the store for a one-shot command that can start a
// store from nothing (merchant add, number add), creating it when it does
// not exist; created reports that it did.
func createCLIStore(ctx context.Context, c *config.Config) (s *binding.Store, created bool, err error) {
	s, err = openConfigured(ctx, c, func(string) { created = true }, binding.WithPolicy(policyOf(c)))
	return s, created, err
}

// openConfigured opens the store of c. A failure names the key to fix; a
// new, empty store is announced, because a command run without --config
// (or with a mistyped store.dsn) would otherwise work on a fresh ./vnum.db
// and the operator would see an empty pool and no bindings.
func openConfigured(ctx context.Context, c *config.Config, announce func(dsn string), opts ...binding.Option) (*binding.Store, error) {
	var created bool
	s, err := binding.Open(ctx, c.Store.Driver, c.Store.DSN, append(opts, binding.ReportCreated(&created))...)
	switch {
	case errors.Is(err, binding.ErrUnsupportedDriver):
		return nil, fmt.Errorf("store.driver: %w", err)
	case errors.Is(err, binding.ErrNoStore):
		return nil, fmt.Errorf("store.dsn: no vnum store at %s yet (vnum merchant add or vnum number add creates one; "+
			"or point --config FILE or VNUM_STORE_DSN at yours)", storeName(c))
	case err != nil:
		return nil, fmt.Errorf("store.dsn: %w", err)
	}
	if created && announce != nil {
		announce(storeName(c))
	}
	return s, nil
}

// storeName is c's store as messages name it: a SQLite file by its
// absolute path, a PostgreSQL DSN with its password masked.
func storeName(c *config.Config) string {
	if c.Store.Driver == config.DriverSQLite {
		if p := config.SQLitePath(c.Store.DSN); p != "" {
			if abs, err := filepath.Abs(p); err == nil {
				return abs
			}
			return p
		}
	}
	return config.MaskURL(c.Store.DSN)
}

// newStoreNotice is the line a one-shot command prints on stderr when it
// created the store.
func newStoreNotice(w io.Writer) func(dsn string) {
	return func(dsn string) {
		fmt.Fprintf(w, "vnum: created a new, empty store %s (store.dsn; set it with --config FILE or VNUM_STORE_DSN)\n", dsn)
	}
}

// showFromStore is the shape of the commands that read or change one
// thing in the store and print the result: check --format, run get on
// the existing store, print view of what it returned.
func showFromStore[T any](cmd *cobra.Command, format string, get func(context.Context, *binding.Store) (T, error),
	view func(T) records) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
		v, err := get(ctx, s)
		if err != nil {
			return err
		}
		return view(v).print(cmd.OutOrStdout(), format)
	})
}

// withStore runs fn on the existing store of a one-shot command
// (openCLIStore) and closes it.
func withStore(cmd *cobra.Command, fn func(ctx context.Context, s *binding.Store) error) error {
	s, err := openCLIStore(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	return runClosing(cmd.Context(), s, fn)
}

// withNewStore is withStore for the commands that can start a store from
// nothing: the store is created when it does not exist, and that is said
// on stderr. A SQLite file it created for a command that then failed (bad
// input) is removed again: a refused command leaves nothing behind.
func withNewStore(cmd *cobra.Command, fn func(ctx context.Context, s *binding.Store) error) error {
	s, created, err := createCLIStore(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	err = runClosing(cmd.Context(), s, fn)
	switch {
	case !created:
	case err == nil:
		newStoreNotice(cmd.ErrOrStderr())(storeName(cfg))
	case cfg.Store.Driver == config.DriverSQLite:
		if file := config.SQLitePath(cfg.Store.DSN); file != "" {
			for _, p := range []string{file, file + "-wal", file + "-shm"} {
				if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
					err = errors.Join(err, rerr)
				}
			}
		}
	}
	return err
}

// runClosing runs fn on s and closes s.
func runClosing(ctx context.Context, s *binding.Store, fn func(ctx context.Context, s *binding.Store) error) (err error) {
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return fn(ctx, s)
}
