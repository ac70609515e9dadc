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

// newRootCmd builds the command tree. Tests build a fresh tree per run so
// that flag values never leak between runs.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "vnum",
		Short:         "Virtual numbers for e-commerce: a SIP B2BUA that hides the consignee's number",
		Version:       versionLine(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// newCompletionCmd replaces cobra's default completion command, so
		// that it refuses an unknown shell like every group here.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Name() == cobra.ShellCompRequestCmd || cmd.Name() == cobra.ShellCompNoDescRequestCmd {
				// The shell asks for completions as the operator types: a
				// configuration error would be noise on the terminal.
				return nil
			}
			setupLogging(cmd.ErrOrStderr())
			c, err := config.Load(configFile)
			if err != nil {
				return err
			}
			if err := c.Validate(); err != nil {
				return err
			}
			if err := setLogLevel(c.Log.Level); err != nil {
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
		newBlockCmd(),
		newCDRCmd(),
		newBillCmd(),
		newEventCmd(),
		newRecordingCmd(),
		newConfigCmd(),
		newServeCmd(),
		newDemoCmd(),
		newVersionCmd(),
		newCompletionCmd(),
		newManCmd(),
	)
	root.SetVersionTemplate("vnum {{.Version}}\n")
	root.SetHelpCommand(newHelpCmd(root))
	requireSubcommands(root)
	return root
}

// newHelpCmd is cobra's help command, except that an unknown topic is an
// error: cobra prints "Unknown help topic" and exits 0.
func newHelpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		// Help works whatever the configuration says.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return fmt.Errorf("unknown help topic %q for %q", strings.Join(rest, " "), target.CommandPath())
			}
			target.SetOut(cmd.OutOrStdout())
			return target.Help()
		},
	}
}

// requireSubcommands gives every command that only groups others (vnum
// binding, vnum merchant, vnum itself) a run function that refuses: cobra
// would print the help and exit 0 for `vnum binding delete ID`, and a
// script would believe the binding deleted (README "Running vnum": an unknown command or
// subcommand exits non-zero with one clear line).
//
// A wrong number of arguments or an unknown flag names the command and its
// usage too: "accepts 1 arg(s), received 0" alone does not say whose.
func requireSubcommands(cmd *cobra.Command) {
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.RunE = refuseSubcommand
	}
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return usageError(c, err)
			}
			return nil
		}
	}
	cmd.SetFlagErrorFunc(usageError)
	for _, sub := range cmd.Commands() {
		requireSubcommands(sub)
	}
}

// usageError prefixes err with the command's path and its usage line.
func usageError(c *cobra.Command, err error) error {
	if !c.HasParent() {
		return err
	}
	return fmt.Errorf("%s: %w (usage: %s)", strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" "), err, c.UseLine())
}

func refuseSubcommand(cmd *cobra.Command, args []string) error {
	var names []string
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	want := strings.Join(names, ", ")
	if len(args) == 0 {
		return fmt.Errorf("%w: %q needs a subcommand: %s", errUsage, cmd.CommandPath(), want)
	}
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // what cobra uses for the root
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		want = "did you mean " + strings.Join(s, ", ") + "?"
	} else {
		want = "want " + want
	}
	return fmt.Errorf("unknown command %q for %q (%s)", args[0], cmd.CommandPath(), want)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := execute(ctx, newRootCmd(), os.Args[1:], os.Stdout, os.Stderr)
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
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && cmd != nil && strings.HasPrefix(err.Error(), "required flag(s)") {
		// cobra checks required flags without a hook of its own.
		err = usageError(cmd, err)
	}
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

// logLevel is the least severe level the process's log writes (log.level).
// The handler reads it on every record, so setLogLevel changes it while
// the server runs, for everything that logs through slog: vnum's own
// loggers and sipgo's, which are built on the default handler.
var logLevel slog.LevelVar

// setLogLevel sets the process's log level to level, a value of log.level
// (debug, info, warn or error).
func setLogLevel(level string) error {
	l, err := config.ParseLogLevel(level)
	if err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	logLevel.Set(l)
	return nil
}

// setupLogging makes slog write JSON lines when w is not a terminal (a
// service manager or a pipe) and text for a person at a terminal, at
// logLevel.
func setupLogging(w io.Writer) {
	opts := &slog.HandlerOptions{Level: &logLevel}
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

// errUsage reports a bad flag value.
var errUsage = errors.New("invalid usage")
