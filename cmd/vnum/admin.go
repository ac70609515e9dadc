package main

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
)

func newMerchantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "merchant", Short: "Manage merchants (tenants)"}
	var name string
	add := &cobra.Command{
		Use:   "add ID --name NAME",
		Short: "Add a merchant",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withNewStore(cmd, func(ctx context.Context, s *binding.Store) error {
				if err := s.AddMerchant(ctx, args[0], name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "merchant %s added\n", args[0])
				return nil
			})
		},
	}
	add.Flags().StringVar(&name, "name", "", "display `NAME` of the merchant")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the merchants with their accounts and active bindings",
		Args:  cobra.NoArgs,
	}
	listFormat := addFormatFlag(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return showFromStore(cmd, *listFormat, func(ctx context.Context, s *binding.Store) ([]binding.MerchantSummary, error) {
			return s.ListMerchants(ctx)
		}, func(ms []binding.MerchantSummary) records { return merchantRecords(ms, false) })
	}
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a merchant with its accounts and active bindings",
		Args:  cobra.ExactArgs(1),
	}
	showFormat := addFormatFlag(show)
	show.RunE = func(cmd *cobra.Command, args []string) error {
		return showFromStore(cmd, *showFormat, func(ctx context.Context, s *binding.Store) (binding.MerchantSummary, error) {
			return s.MerchantSummary(ctx, args[0])
		}, func(m binding.MerchantSummary) records { return merchantRecords([]binding.MerchantSummary{m}, true) })
	}
	cmd.AddCommand(add, list, show, newMerchantProtectionCmd(), newMerchantAnnouncementCmd(), newMerchantWebhookCmd())
	return cmd
}

func newAccountCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "account", Short: "Manage merchants' SIP accounts"}
	cmd.AddCommand(newAccountAddCmd(), newAccountListCmd(), newAccountPasswordCmd(), newAccountRemoveCmd())
	return cmd
}

func newAccountAddCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add MERCHANT USER --password P",
		Short: "Add a SIP login for a merchant (only digest hashes are stored)",
		Args:  cobra.ExactArgs(2),
	}
	password := addPasswordFlags(cmd, "SIP digest password `P`")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		pw, err := password(cmd)
		if err != nil {
			return err
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			if err := s.AddAccount(ctx, args[0], args[1], pw); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "account %s added for merchant %s (realm %s)\n", args[1], args[0], binding.Realm)
			return nil
		})
	}
	return cmd
}

func newAccountListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list MERCHANT",
		Short: "List a merchant's SIP logins (never their passwords or hashes)",
		Args:  cobra.ExactArgs(1),
	}
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return showFromStore(cmd, *format, func(ctx context.Context, s *binding.Store) ([]binding.AccountInfo, error) {
			return s.ListAccounts(ctx, args[0])
		}, func(as []binding.AccountInfo) records { return accountRecords(as) })
	}
	return cmd
}

func newAccountPasswordCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "password MERCHANT USER --password P",
		Short: "Change a SIP login's password; its next request needs the new one",
		Args:  cobra.ExactArgs(2),
	}
	password := addPasswordFlags(cmd, "the new SIP digest password `P`")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		pw, err := password(cmd)
		if err != nil {
			return err
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			if err := s.SetPassword(ctx, args[0], args[1], pw); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "password of account %s (merchant %s) changed; "+
				"its softphone must register again with the new one\n", args[1], args[0])
			return nil
		})
	}
	return cmd
}

func newAccountRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove MERCHANT USER",
		Short: "Remove a SIP login; its next request is refused (calls in progress go on)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
				if err := s.RemoveAccount(ctx, args[0], args[1]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "account %s of merchant %s removed\n", args[1], args[0])
				return nil
			})
		},
	}
}

// addPasswordFlags adds --password and --password-stdin to cmd and
// returns what reads the password they give. Reading it from standard
// input keeps it out of the shell's history and the process list.
func addPasswordFlags(cmd *cobra.Command, usage string) func(*cobra.Command) (string, error) {
	var password string
	var fromStdin bool
	cmd.Flags().StringVar(&password, "password", "", usage)
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	return func(cmd *cobra.Command) (string, error) {
		if fromStdin && cmd.Flags().Changed("password") {
			return "", fmt.Errorf("%w: give --password or --password-stdin, not both", errUsage)
		}
		if fromStdin {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return "", fmt.Errorf("%w: --password-stdin: no password on standard input", errUsage)
			}
			password = strings.TrimRight(line, "\r\n")
		}
		if password == "" {
			return "", fmt.Errorf("%w: --password or --password-stdin is required", errUsage)
		}
		return password, nil
	}
}

func newNumberCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "number", Short: "Manage the host-number pool"}
	add := &cobra.Command{
		Use:   "add X...",
		Short: "Add host numbers (5 to 15 digits, +86 allowed) to the pool, all or none",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withNewStore(cmd, func(ctx context.Context, s *binding.Store) error {
				if err := s.AddNumbers(ctx, args...); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d number(s) added to the pool\n", len(args))
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the pool with the active bindings per number",
		Args:  cobra.NoArgs,
	}
	format := addFormatFlag(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return showFromStore(cmd, *format, func(ctx context.Context, s *binding.Store) ([]binding.Number, error) {
			return s.ListNumbers(ctx)
		}, func(ns []binding.Number) records { return numberRecords(ns) })
	}
	remove := &cobra.Command{
		Use:   "remove X",
		Short: "Take a host number out of the pool once no binding on it is active or in quarantine",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := binding.NormaliseHost(args[0])
			if err != nil {
				return err
			}
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
				if err := s.RemoveNumber(ctx, h); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "number %s removed from the pool\n", h)
				return nil
			})
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

// merchantRecords prints merchants with their counts. one selects a JSON
// object instead of an array.
func merchantRecords(ms []binding.MerchantSummary, one bool) records {
	r := records{header: []string{"id", "name", "created_at", "accounts", "active_bindings"}, json: nonNil(ms)}
	if one && len(ms) == 1 {
		r.json = ms[0]
	}
	for _, m := range ms {
		r.rows = append(r.rows, []string{m.ID, m.Name, callrec.FormatTime(m.CreatedAt), strconv.Itoa(m.Accounts),
			strconv.Itoa(m.ActiveBindings)})
	}
	return r
}

// accountRecords prints SIP logins: names and state, never secrets.
func accountRecords(as []binding.AccountInfo) records {
	r := records{header: []string{"user", "merchant", "created_at", "registered"}, json: nonNil(as)}
	for _, a := range as {
		r.rows = append(r.rows, []string{a.User, a.Merchant, callrec.FormatTime(a.CreatedAt), strconv.FormatBool(a.Registered)})
	}
	return r
}
