package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/binding/api"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/protection"
)

// The commands of consignee protection: the order's lifecycle, a
// merchant's own protection and clip, and blocks. None of them prints a
// consignee's number.

// platformProtection is the platform's protection of the configuration
// the command runs with.
func platformProtection() (protection.Platform, error) { return cfg.Protection.Platform() }

func newBindingStatusCmd() *cobra.Command {
	var status string
	cmd := &cobra.Command{
		Use:   "status ID --order-status S",
		Short: "Move a binding's order: shipped, delivered, closed or after_sale (a closed order's calls end protection.after_close later)",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&status, "order-status", "", "the order's status `S`: shipped, delivered, closed or after_sale")
	if err := cmd.MarkFlagRequired("order-status"); err != nil {
		panic(err) // the flag name above is a constant
	}
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		p, err := platformProtection()
		if err != nil {
			return err
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			b, err := s.SetOrderStatus(ctx, args[0], status, p.AfterClose, time.Now())
			if err != nil {
				return err
			}
			return bindingRecords([]binding.Binding{*b}, true).print(cmd.OutOrStdout(), *format)
		})
	}
	return cmd
}

func newMerchantProtectionCmd() *cobra.Command {
	var show, record bool
	var quiet, announce string
	var perDay, perBinding int
	cmd := &cobra.Command{
		Use: "protection ID [--quiet-hours HH:MM-HH:MM] [--calls-per-day N] [--calls-per-binding N] " +
			"[--announce off|inform|confirm] [--record] | --show",
		Short: "Show or set a merchant's own consignee protection, which may only be stricter than the platform's",
		Args:  cobra.ExactArgs(1),
	}
	f := cmd.Flags()
	f.BoolVar(&show, "show", false, "show the protection in force, the merchant's own and the platform's")
	f.StringVar(&quiet, "quiet-hours", "", "a quiet window `HH:MM-HH:MM` of the merchant's own, besides the platform's (\"\" for none)")
	f.IntVar(&perDay, "calls-per-day", 0, "at most `N` calls a local day to one consignee (0: the platform's)")
	f.IntVar(&perBinding, "calls-per-binding", 0, "at most `N` calls over one binding's life (0: the platform's)")
	f.StringVar(&announce, "announce", "", "what the consignee hears before the bridge: off, inform or confirm (\"\": the platform's)")
	f.BoolVar(&record, "record", false, "record the merchant's calls where the platform records as merchants choose")
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		p, err := platformProtection()
		if err != nil {
			return err
		}
		changes := []string{"quiet-hours", "calls-per-day", "calls-per-binding", "announce", "record"}
		changed := false
		for _, name := range changes {
			changed = changed || f.Changed(name)
		}
		if show && changed {
			return fmt.Errorf("%w: --show shows; give it alone, or the --%s flags to set", errUsage,
				strings.Join(changes, ", --"))
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			if changed {
				own, err := s.MerchantProtection(ctx, args[0])
				if err != nil {
					return err
				}
				// The flags given change their parts; the others stay.
				if f.Changed("quiet-hours") {
					if own.QuietHours, err = protection.ParseWindow(quiet); err != nil {
						return fmt.Errorf("--quiet-hours: %w", err)
					}
				}
				if f.Changed("announce") {
					if own.Announce, err = protection.ParseAnnounce(announce); err != nil {
						return fmt.Errorf("--announce: %w", err)
					}
				}
				if f.Changed("calls-per-day") {
					own.CallsPerDay = perDay
				}
				if f.Changed("calls-per-binding") {
					own.CallsPerBinding = perBinding
				}
				if f.Changed("record") {
					own.Record = record
				}
				if err := s.SetMerchantProtection(ctx, args[0], own, p); err != nil {
					return err
				}
			}
			v, err := s.ProtectionView(ctx, args[0], p)
			if err != nil {
				return err
			}
			return protectionRecords(v).print(cmd.OutOrStdout(), *format)
		})
	}
	return cmd
}

// protectionRecords prints a merchant's protection one part a row: what
// is in force, the merchant's own and the platform's.
func protectionRecords(v binding.ProtectionView) records {
	r := records{header: []string{"part", "in_force", "merchant", "platform", "from_merchant"}, json: v}
	from := func(part string) string {
		for _, p := range v.Parts {
			if p == part {
				return "yes"
			}
		}
		return "no"
	}
	capString := func(n int) string {
		if n == 0 {
			return "none"
		}
		return strconv.Itoa(n)
	}
	var windows []string
	for _, w := range v.Effective.QuietHours {
		windows = append(windows, w.String())
	}
	orNone := func(s string) string {
		if s == "" {
			return "none"
		}
		return s
	}
	ownCap := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	r.rows = [][]string{
		{"timezone", v.Effective.Location.String(), "", v.Effective.Location.String(), "no"},
		{"quiet_hours", orNone(strings.Join(windows, " ")), v.Own.QuietHours.String(), orNone(v.Platform.QuietHours.String()),
			from("quiet_hours")},
		{"calls_per_day", capString(v.Effective.CallsPerDay), ownCap(v.Own.CallsPerDay), capString(v.Platform.CallsPerDay),
			from("calls_per_day")},
		{"calls_per_binding", capString(v.Effective.CallsPerBinding), ownCap(v.Own.CallsPerBinding),
			capString(v.Platform.CallsPerBinding), from("calls_per_binding")},
		{"announce", v.Effective.Announce.String(), v.Own.Announce.String(), v.Platform.Announce.String(), from("announce")},
		{"record", strconv.FormatBool(v.Effective.Record), strconv.FormatBool(v.Own.Record), "", from("record")},
	}
	return r
}

func newMerchantAnnouncementCmd() *cobra.Command {
	var remove bool
	cmd := &cobra.Command{
		Use:   "announcement ID FILE.wav | --remove",
		Short: "Store the clip that names a merchant to the consignee (WAV, 8 kHz mono, 16-bit PCM, A-law or µ-law, at most 5 s), or remove it",
		Args:  cobra.RangeArgs(1, 2),
	}
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the merchant's clip: the notice says \"a merchant\" again")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch {
		case remove && len(args) == 2:
			return fmt.Errorf("%w: give FILE.wav or --remove, not both", errUsage)
		case !remove && len(args) == 1:
			return fmt.Errorf("%w: merchant announcement %s: want FILE.wav, or --remove", errUsage, args[0])
		}
		if remove {
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
				if err := s.RemoveAnnouncement(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "announcement of merchant %s removed\n", args[0])
				return nil
			})
		}
		wav, err := readClip(args[1])
		if err != nil {
			return err
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			clip, err := s.SetAnnouncement(ctx, args[0], wav)
			if err != nil {
				return fmt.Errorf("%s: %w", args[1], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "announcement of merchant %s stored: %s, %.1f s\n", args[0], clip.Encoding,
				clip.Duration().Seconds())
			return nil
		})
	}
	return cmd
}

// readClip reads a clip file, refusing one larger than the API takes:
// five seconds of 8 kHz audio is at most 80 KB.
func readClip(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, api.MaxBodyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > api.MaxBodyBytes {
		return nil, fmt.Errorf("%s: %w: larger than 1 MiB; want a WAV file, 8 kHz mono, 16-bit PCM, A-law or µ-law, at most 5 s",
			name, protection.ErrBadClip)
	}
	return b, nil
}

func newBlockCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "block", Short: "Block callers from ringing a consignee, list and lift blocks"}
	cmd.AddCommand(newBlockAddCmd(), newBlockListCmd(), newBlockRemoveCmd())
	return cmd
}

func newBlockAddCmd() *cobra.Command {
	var id, caller string
	cmd := &cobra.Command{
		Use:   "add --binding ID [--caller NUMBER]",
		Short: "Block the binding's merchant (or one PSTN caller) from ringing its consignee through any binding",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&id, "binding", "", "the binding `ID` whose consignee is protected")
	cmd.Flags().StringVar(&caller, "caller", "", "a PSTN caller `NUMBER` of that binding to block (without it: the binding's merchant)")
	if err := cmd.MarkFlagRequired("binding"); err != nil {
		panic(err) // the flag name above is a constant
	}
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return showFromStore(cmd, *format, func(ctx context.Context, s *binding.Store) (binding.Block, error) {
			return s.AddBlock(ctx, id, caller, time.Now())
		}, func(b binding.Block) records { return blockRecords([]binding.Block{b}, true) })
	}
	return cmd
}

func newBlockListCmd() *cobra.Command {
	var merchant string
	cmd := &cobra.Command{
		Use:   "list [--merchant M]",
		Short: "List blocks by the binding and merchant they were made through (never the consignee)",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&merchant, "merchant", "", "only blocks made through merchant `M`'s bindings")
	format := addFormatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return showFromStore(cmd, *format, func(ctx context.Context, s *binding.Store) ([]binding.Block, error) {
			return s.Blocks(ctx, merchant)
		}, func(bs []binding.Block) records { return blockRecords(bs, false) })
	}
	return cmd
}

func newBlockRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Lift a block: the caller may ring the consignee again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
				if err := s.RemoveBlock(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "block %s removed\n", args[0])
				return nil
			})
		},
	}
}

// blockRecords prints blocks; a merchant's block has no caller, which
// the table shows as "(merchant)". one selects a JSON object instead of
// an array.
func blockRecords(bs []binding.Block, one bool) records {
	header := []string{"id", "binding", "merchant", "caller", "source", "created_at"}
	r := records{header: header, tableHeader: header, tableRows: [][]string{}, json: nonNil(bs)}
	if one && len(bs) == 1 {
		r.json = bs[0]
	}
	for _, b := range bs {
		row := []string{b.ID, b.Binding, b.Merchant, b.Caller, b.Source, callrec.FormatTime(b.CreatedAt)}
		r.rows = append(r.rows, row)
		shown := append([]string(nil), row...)
		if b.Caller == "" {
			shown[3] = "(merchant)"
		}
		r.tableRows = append(r.tableRows, shown)
	}
	return r
}
