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
	"github.com/vnum/vnum/events"
)

// The commands of call events (README "Call events"): a merchant's
// webhook, and the outbox's events.

// newMerchantWebhookCmd is `vnum merchant webhook ID --url URL --secret S`,
// `--remove` and `--show`.
func newMerchantWebhookCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhook ID (--url URL --secret S | --remove | --show)",
		Short: "Register, show or remove the endpoint that receives a merchant's call events",
		Args:  cobra.ExactArgs(1),
	}
	var url, secret string
	var fromStdin, remove, show bool
	cmd.Flags().StringVar(&url, "url", "", "http:// or https:// `URL` the events are posted to")
	cmd.Flags().StringVar(&secret, "secret", "", "the `SECRET` that signs each delivery (16 characters or more)")
	cmd.Flags().BoolVar(&fromStdin, "secret-stdin", false, "read the secret from the first line of standard input")
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the webhook: no more events are written, pending ones are failed")
	cmd.Flags().BoolVar(&show, "show", false, "show the webhook, its secret masked")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		merchant := args[0]
		setting := url != "" || secret != "" || fromStdin
		switch {
		case remove && (show || setting), show && setting:
			return fmt.Errorf("%w: give --url and --secret, or --remove, or --show", errUsage)
		case remove:
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
				if err := s.RemoveWebhook(ctx, merchant); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "webhook of merchant %s removed; its pending events are failed\n", merchant)
				return nil
			})
		case show:
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
				w, err := s.Webhook(ctx, merchant)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "webhook of merchant %s: %s (secret %s)\n", merchant, w.URL, w.MaskedSecret())
				return nil
			})
		}
		if fromStdin {
			if secret != "" {
				return fmt.Errorf("%w: give --secret or --secret-stdin, not both", errUsage)
			}
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("%w: --secret-stdin: no secret on standard input", errUsage)
			}
			secret = strings.TrimRight(line, "\r\n")
		}
		if url == "" || secret == "" {
			return fmt.Errorf("%w: --url and --secret (or --secret-stdin) are required, or --remove, or --show", errUsage)
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			if _, err := s.Merchant(ctx, merchant); err != nil {
				return err
			}
			if err := binding.CheckWebhook(url, secret); err != nil {
				return err
			}
			if err := events.CheckURL(ctx, url, cfg.Events.AllowPrivate, nil); err != nil {
				return err
			}
			w, err := s.SetWebhook(ctx, merchant, url, secret)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "webhook of merchant %s set: %s (secret %s); events are written from now on\n",
				merchant, w.URL, w.MaskedSecret())
			return nil
		})
	}
	return cmd
}

// newEventCmd is `vnum event list` and `vnum event retry`.
func newEventCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "event", Short: "List call events and retry failed ones"}
	list := &cobra.Command{
		Use:   "list [--merchant M] [--status pending|delivered|failed] [--limit N]",
		Short: "List the call events in the outbox, newest first, with their delivery state",
		Args:  cobra.NoArgs,
	}
	format := addFormatFlag(list)
	var merchant, status string
	var limit int
	list.Flags().StringVar(&merchant, "merchant", "", "only this merchant's events")
	list.Flags().StringVar(&status, "status", "", "only events that are pending, delivered or failed")
	list.Flags().IntVar(&limit, "limit", binding.DefaultEventLimit, "at most `N` events (1 to 1000)")
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		if err := binding.CheckEventStatus(status); err != nil {
			return fmt.Errorf("%w: --status: %v", errUsage, err)
		}
		if limit < 1 || limit > binding.MaxEventLimit {
			return fmt.Errorf("%w: --limit %d: want 1 to %d", errUsage, limit, binding.MaxEventLimit)
		}
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			es, err := s.ListEvents(ctx, binding.EventFilter{Merchant: merchant, Status: status, Limit: limit})
			if err != nil {
				return err
			}
			return eventRecords(es).print(cmd.OutOrStdout(), *format)
		})
	}
	retry := &cobra.Command{
		Use:   "retry ID",
		Short: "Send a failed event again, with a new retry schedule; the call's later events follow it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
				e, err := s.RetryEvent(ctx, args[0], s.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "event %s (%s of merchant %s) is pending again; a running vnum serve sends it\n",
					e.ID, e.Type, e.Merchant)
				return nil
			})
		},
	}
	cmd.AddCommand(list, retry)
	return cmd
}

// eventRecords prints events: csv and json with every field (json with
// the data too), the table with what an operator scans.
func eventRecords(es []binding.Event) records {
	r := records{
		header: []string{"id", "type", "created_at", "merchant", "call_id", "sequence", "status", "attempts",
			"next_attempt_at", "last_error", "delivered_at"},
		tableHeader: []string{"created_at", "id", "type", "merchant", "seq", "status", "tries", "last_error"},
		tableRows:   [][]string{},
		json:        nonNil(es),
	}
	for _, e := range es {
		r.rows = append(r.rows, []string{e.ID, e.Type, callrec.FormatTime(e.CreatedAt), e.Merchant, e.CallID,
			strconv.Itoa(e.Sequence), e.Status, strconv.Itoa(e.Attempts), callrec.FormatTime(e.NextAt), e.LastError,
			callrec.FormatTime(e.DeliveredAt)})
		r.tableRows = append(r.tableRows, []string{callrec.FormatTime(e.CreatedAt), e.ID, e.Type, clip(e.Merchant, 12),
			strconv.Itoa(e.Sequence), e.Status, strconv.Itoa(e.Attempts), clip(e.LastError, 40)})
	}
	return r
}
