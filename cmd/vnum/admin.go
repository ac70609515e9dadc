package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
)

func newMerchantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "merchant", Short: "Manage merchants (tenants)"}
	var name string
	add := &cobra.Command{
		Use:   "add ID --name NAME",
		Short: "Add a merchant",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
				if err := s.AddMerchant(ctx, args[0], name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "merchant %s added\n", args[0])
				return nil
			})
		},
	}
	add.Flags().StringVar(&name, "name", "", "display `NAME` of the merchant")
	cmd.AddCommand(add)
	return cmd
}

func newAccountCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "account", Short: "Manage merchants' SIP accounts"}
	var password string
	var fromStdin bool
	add := &cobra.Command{
		Use:   "add MERCHANT USER --password P",
		Short: "Add a SIP login for a merchant (only digest hashes are stored)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromStdin {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("%w: --password-stdin: no password on standard input", errUsage)
				}
				password = strings.TrimRight(line, "\r\n")
			}
			if password == "" {
				return fmt.Errorf("%w: --password or --password-stdin is required", errUsage)
			}
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
				if err := s.AddAccount(ctx, args[0], args[1], password); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "account %s added for merchant %s (realm %s)\n", args[1], args[0], binding.Realm)
				return nil
			})
		},
	}
	add.Flags().StringVar(&password, "password", "", "SIP digest password `P`")
	add.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	cmd.AddCommand(add)
	return cmd
}

func newNumberCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "number", Short: "Manage the host-number pool"}
	add := &cobra.Command{
		Use:   "add X...",
		Short: "Add host numbers (11 digits, +86 allowed) to the pool, all or none",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
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
		if err := checkFormat(*format); err != nil {
			return err
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			ns, err := s.ListNumbers(ctx)
			if err != nil {
				return err
			}
			return numberRecords(ns).print(cmd.OutOrStdout(), *format)
		})
	}
	cmd.AddCommand(add, list)
	return cmd
}
