// Command vnum is the virtual-number SIP B2BUA and its administration CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/config"
)

// cfg is the validated configuration, loaded by the root command's
// PersistentPreRunE before any subcommand runs.
var cfg *config.Config

// configFile is the value of the persistent --config flag.
var configFile string

// rootCmd is the vnum command; serve.go and demo.go add their commands to
// it in their init functions.
var rootCmd = newRootCmd()

// newRootCmd builds the command tree (without serve and demo). Tests build
// a fresh tree per run so that flag values never leak between runs.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "vnum",
		Short:         "Virtual numbers for e-commerce: a SIP B2BUA that hides the consignee's number",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			setupLogging(cmd.ErrOrStderr())
			c, err := config.Load(configFile)
			if err != nil {
				return err
			}
			if err := c.Validate(); err != nil {
				return err
			}
			cfg = c
			return nil
		},
	}
	root.PersistentFlags().StringVar(&configFile, "config", "", "YAML configuration `FILE` (keys may also come from VNUM_* variables)")
	root.AddCommand(
		newMerchantCmd(),
		newAccountCmd(),
		newNumberCmd(),
		newBindingCmd(),
		newCDRCmd(),
		newBillCmd(),
		newConfigCmd(),
	)
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := execute(ctx, rootCmd, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		os.Exit(1)
	}
}

// execute runs root with args and prints a failure as one line on stderr,
// "vnum: <why>".
func execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) error {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(os.Stdin)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "vnum: %s\n", oneLine(err))
	}
	return err
}

// oneLine folds a possibly multi-line error (errors.Join, cobra's
// suggestions) into one line.
func oneLine(err error) string {
	msg := err.Error()
	if head, sugg, ok := strings.Cut(msg, "\n\nDid you mean this?\n"); ok {
		msg = head + " (did you mean " + strings.Join(strings.Fields(sugg), ", ") + "?)"
	}
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// setupLogging makes slog write JSON lines when w is not a terminal (a
// service manager or a pipe) and text for a person at a terminal.
func setupLogging(w io.Writer) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if isTerminal(w) {
		h = slog.NewTextHandler(w, opts)
	}
	slog.SetDefault(slog.New(h))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// policyOf returns the binding rules of c.
func policyOf(c *config.Config) binding.Policy {
	return binding.Policy{
		TTL:             c.Binding.TTL,
		Quarantine:      c.Binding.Quarantine,
		ExtensionDigits: c.IVR.ExtensionDigits,
	}
}

// ratesOf returns the billing rates of c (validated decimals).
func ratesOf(c *config.Config) (binding.Rates, error) {
	return binding.ParseRates(c.Billing.PerMinute, c.Billing.RentalPerDay)
}

// openStore opens the configured store with the configured binding policy
// and closes CDR rows left open by a crash. It is for the long-running
// server; one-shot commands use openCLIStore.
func openStore(ctx context.Context, c *config.Config) (*binding.Store, error) {
	return binding.Open(ctx, c.Store.Driver, c.Store.DSN, binding.WithPolicy(policyOf(c)))
}

// openCLIStore opens the store for a one-shot command. It leaves open CDR
// rows alone: they may belong to calls of a `vnum serve` running now.
func openCLIStore(ctx context.Context, c *config.Config) (*binding.Store, error) {
	return binding.Open(ctx, c.Store.Driver, c.Store.DSN, binding.WithPolicy(policyOf(c)), binding.WithoutRecovery())
}

// withStore runs fn on a store opened for a one-shot command and closes it.
func withStore(cmd *cobra.Command, fn func(ctx context.Context, s *binding.Store) error) (err error) {
	ctx := cmd.Context()
	s, err := openCLIStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return fn(ctx, s)
}

// errUsage reports a bad flag value.
var errUsage = errors.New("invalid usage")
