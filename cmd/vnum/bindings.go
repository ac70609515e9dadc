package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
)

func newBindingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "binding", Short: "Create, read, release and renew bindings; move their orders"}
	cmd.AddCommand(newBindingCreateCmd(), newBindingShowCmd(), newBindingListCmd(),
		newBindingReleaseCmd(), newBindingRenewCmd(), newBindingStatusCmd())
	return cmd
}

func newBindingCreateCmd() *cobra.Command {
	var req binding.CreateRequest
	var ttl string
	cmd := &cobra.Command{
		Use:   "create --merchant M --order O --consignee B --order-status S [--ttl 720h] [--calls both|to_consignee|from_consignee]",
		Short: "Give a shipped order a virtual number",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&req.Merchant, "merchant", "", "merchant `M` that owns the order")
	cmd.Flags().StringVar(&req.Order, "order", "", "order `O`")
	cmd.Flags().StringVar(&req.Consignee, "consignee", "", "consignee number `B` (mobile or E.164); never printed")
	cmd.Flags().StringVar(&req.OrderStatus, "order-status", "", "order status `S`: shipped, delivered or after_sale")
	cmd.Flags().StringVar(&ttl, "ttl", "", "lifetime, 1h to 8760h (default binding.ttl)")
	cmd.Flags().StringVar(&req.Calls, "calls", "both", "which calls the binding takes: both, to_consignee (no calls back) "+
		"or from_consignee (no calls to the consignee)")
	for _, f := range []string{"merchant", "order", "consignee", "order-status"} {
		if err := cmd.MarkFlagRequired(f); err != nil {
			panic(err) // the flag names above are constants
		}
	}
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		d, err := binding.ParseTTL(ttl)
		if err != nil {
			return err
		}
		req.TTL = d
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			b, err := s.CreateBinding(ctx, req, time.Now())
			if err != nil {
				return err
			}
			return bindingRecords([]binding.Binding{*b}, true).print(cmd.OutOrStdout(), *format)
		})
	}
	return cmd
}

func newBindingShowCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "show ID", Short: "Show a binding", Args: cobra.ExactArgs(1)}
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return showFromStore(cmd, *format, func(ctx context.Context, s *binding.Store) (*binding.Binding, error) {
			return s.GetBinding(ctx, args[0])
		}, func(b *binding.Binding) records { return bindingRecords([]binding.Binding{*b}, true) })
	}
	return cmd
}

func newBindingListCmd() *cobra.Command {
	var merchant, order string
	cmd := &cobra.Command{Use: "list [--merchant M] [--order O]", Short: "List bindings", Args: cobra.NoArgs}
	cmd.Flags().StringVar(&merchant, "merchant", "", "only bindings of merchant `M`")
	cmd.Flags().StringVar(&order, "order", "", "only bindings of order `O`")
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			rows, err := s.Bindings(ctx, binding.BindingFilter{Merchant: merchant, Order: order}, binding.Page{})
			if err != nil {
				return err
			}
			return printRows(cmd.OutOrStdout(), *format, rows, bindingView)
		})
	}
	return cmd
}

func newBindingReleaseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release ID",
		Short: "End a binding now (calls in progress go on)",
		Args:  cobra.ExactArgs(1),
	}
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return showFromStore(cmd, *format, func(ctx context.Context, s *binding.Store) (*binding.Binding, error) {
			return s.Release(ctx, args[0], time.Now())
		}, func(b *binding.Binding) records { return bindingRecords([]binding.Binding{*b}, true) })
	}
	return cmd
}

func newBindingRenewCmd() *cobra.Command {
	var ttl string
	cmd := &cobra.Command{
		Use:   "renew ID [--ttl 720h]",
		Short: "Give the binding's order a new virtual number, ending the old one",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&ttl, "ttl", "", "lifetime, 1h to 8760h (default binding.ttl)")
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		d, err := binding.ParseTTL(ttl)
		if err != nil {
			return err
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			b, err := s.Renew(ctx, args[0], d, time.Now())
			if err != nil {
				return err
			}
			return bindingRecords([]binding.Binding{*b}, true).print(cmd.OutOrStdout(), *format)
		})
	}
	return cmd
}

// parseTime reads a --from/--to flag (see binding.ParseTime), naming the
// flag when it is bad.
func parseTime(flag, v string, loc *time.Location) (time.Time, error) {
	t, err := binding.ParseTime(v, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: --%s: %v", errUsage, flag, err)
	}
	return t, nil
}
