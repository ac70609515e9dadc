package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/vnum/vnum/binding"
)

func newCDRCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cdr", Short: "Call records"}
	var merchant, from, to string
	list := &cobra.Command{
		Use:   "list [--merchant M] [--from T] [--to T]",
		Short: "List call records started in [from, to), streamed as they are read",
		Args:  cobra.NoArgs,
	}
	list.Flags().StringVar(&merchant, "merchant", "", "only calls of merchant `M`")
	list.Flags().StringVar(&from, "from", "", "first start time `T` (RFC 3339 or date in billing.timezone)")
	list.Flags().StringVar(&to, "to", "", "end `T`, exclusive")
	format := addFormatFlag(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		loc, err := time.LoadLocation(cfg.Billing.Timezone)
		if err != nil {
			return err
		}
		lo, err := parseTime("from", from, loc)
		if err != nil {
			return err
		}
		hi, err := parseTime("to", to, loc)
		if err != nil {
			return err
		}
		if !lo.IsZero() && !hi.IsZero() && lo.After(hi) {
			return fmt.Errorf("%w: --from %s is after --to %s", errUsage, from, to)
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			rows, err := s.CDRs(ctx, binding.CDRFilter{Merchant: merchant, From: lo, To: hi}, binding.Page{})
			if err != nil {
				return err
			}
			return printRows(cmd.OutOrStdout(), *format, rows, cdrView)
		})
	}
	cmd.AddCommand(list)
	return cmd
}

func newBillCmd() *cobra.Command {
	var merchant, month string
	cmd := &cobra.Command{
		Use:   "bill --merchant M --month YYYY-MM",
		Short: "A merchant's bill for a month in billing.timezone",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&merchant, "merchant", "", "merchant `M`")
	cmd.Flags().StringVar(&month, "month", "", "month `YYYY-MM`")
	for _, f := range []string{"merchant", "month"} {
		if err := cmd.MarkFlagRequired(f); err != nil {
			panic(err) // the flag names above are constants
		}
	}
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		loc, err := time.LoadLocation(cfg.Billing.Timezone)
		if err != nil {
			return err
		}
		rates, err := ratesOf(cfg)
		if err != nil {
			return err
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			b, err := s.Bill(ctx, merchant, month, loc, rates, cfg.Billing.Currency)
			if err != nil {
				return err
			}
			r := records{
				header: []string{"merchant", "month", "currency", "binding_days", "rental", "calls", "minutes",
					"call_fee", "total"},
				rows: [][]string{{b.Merchant, b.Month, b.Currency, strconv.Itoa(b.BindingDays), b.Rental.String(),
					strconv.Itoa(b.Calls), strconv.Itoa(b.Minutes), b.CallFee.String(), b.Total.String()}},
				json: b,
			}
			return r.print(cmd.OutOrStdout(), *format)
		})
	}
	return cmd
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Configuration"}
	var format string
	show := &cobra.Command{
		Use:   "show [--format yaml|json]",
		Short: "Print the effective configuration, secrets masked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m := cfg.Masked()
			switch format {
			case "yaml":
				enc := yaml.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent(2)
				if err := enc.Encode(m); err != nil {
					return err
				}
				return enc.Close()
			case formatJSON:
				return records{json: m}.print(cmd.OutOrStdout(), formatJSON)
			}
			return fmt.Errorf("%w: --format %q: want yaml or json", errUsage, format)
		},
	}
	show.Flags().StringVar(&format, "format", "yaml", "output `FORMAT`: yaml or json")
	cmd.AddCommand(show)
	return cmd
}
