package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
)

const webhookSecret = "whsec-0123456789abcdef"

// TestWebhookAndEventCommands: `vnum merchant webhook` registers, shows
// (masked) and removes a merchant's endpoint, refusing a private address
// unless events.allow_private; `vnum event list` shows the outbox and
// `vnum event retry` sends a failed event again. Every refusal is one
// line, and the secret is never printed.
func TestWebhookAndEventCommands(t *testing.T) {
	dsn := useTempStore(t)
	mustRun(t, "merchant", "add", "m1", "--name", "Shop One")

	requireOneLineError(t, []string{"merchant", "webhook", "m1", "--url", "http://127.0.0.1:9000/hook", "--secret", webhookSecret},
		"loopback or private address")
	requireOneLineError(t, []string{"merchant", "webhook", "m1", "--url", "https://203.0.113.10/hook", "--secret", "short"},
		"want at least 16")
	requireOneLineError(t, []string{"merchant", "webhook", "nosuch", "--url", "https://203.0.113.10/hook", "--secret", webhookSecret},
		"not found")
	requireOneLineError(t, []string{"merchant", "webhook", "m1", "--url", "https://203.0.113.10/hook"}, "--secret")
	requireOneLineError(t, []string{"merchant", "webhook", "m1", "--remove", "--show"}, "or --remove, or --show")
	requireOneLineError(t, []string{"merchant", "webhook", "m1", "--show"}, "not found")

	out := mustRun(t, "merchant", "webhook", "m1", "--url", "https://203.0.113.10/hook", "--secret", webhookSecret)
	require.Contains(t, out, "webhook of merchant m1 set: https://203.0.113.10/hook (secret ****cdef)")
	require.NotContains(t, out, webhookSecret)
	out, errOut, err := runCLIStdin(t, "another-secret-0001\n", "merchant", "webhook", "m1", "--url", "http://203.0.113.11/x", "--secret-stdin")
	require.NoError(t, err, errOut)
	require.Contains(t, out, "(secret ****0001)")
	require.Equal(t, "webhook of merchant m1: http://203.0.113.11/x (secret ****0001)\n", mustRun(t, "merchant", "webhook", "m1", "--show"))

	t.Setenv("VNUM_EVENTS_ALLOW_PRIVATE", "true")
	require.Contains(t, mustRun(t, "merchant", "webhook", "m1", "--url", "http://127.0.0.1:9000/hook", "--secret", webhookSecret),
		"set: http://127.0.0.1:9000/hook")

	// A call of m1's: its events are in the outbox.
	s, err := binding.Open(context.Background(), binding.DriverSQLite, dsn)
	require.NoError(t, err)
	ctx := context.Background()
	at := time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)
	c := &callrec.Record{CallID: "a@x", Merchant: "m1", BindingID: "b_1", Order: "o-1", Host: "17000000001", StartedAt: at}
	require.NoError(t, s.StartCDR(ctx, c))
	ds, err := s.ClaimEvents(ctx, at.Add(time.Hour), 5, time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.EventAttemptFailed(ctx, ds[0], "HTTP 500 Internal Server Error", time.Time{}))
	require.NoError(t, s.Close())

	out = mustRun(t, "event", "list")
	require.Contains(t, out, "call.started")
	require.Contains(t, out, "failed")
	var es []map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "event", "list", "--merchant", "m1", "--status", "failed", "--format", "json")), &es))
	require.Len(t, es, 1)
	require.Equal(t, "HTTP 500 Internal Server Error", es[0]["last_error"])
	require.Equal(t, c.ID, es[0]["call_id"])
	csv := mustRun(t, "event", "list", "--format", "csv")
	require.True(t, strings.HasPrefix(csv, "id,type,created_at,merchant,call_id,sequence,status,attempts"), csv)
	require.Equal(t, "[]\n", mustRun(t, "event", "list", "--status", "delivered", "--format", "json"))
	requireOneLineError(t, []string{"event", "list", "--merchant", "nosuch"}, "not found")
	requireOneLineError(t, []string{"event", "list", "--status", "lost"}, `status "lost": want pending, delivered or failed`)
	requireOneLineError(t, []string{"event", "list", "--limit", "0"}, "--limit 0: want 1 to 1000")

	id := es[0]["id"].(string)
	require.Contains(t, mustRun(t, "event", "retry", id), "event "+id+" (call.started of merchant m1) is pending again")
	requireOneLineError(t, []string{"event", "retry", "ev_nosuch"}, "not found")
	out = mustRun(t, "event", "list", "--status", "pending", "--format", "json")
	require.Contains(t, out, id)

	require.Contains(t, mustRun(t, "merchant", "webhook", "m1", "--remove"), "webhook of merchant m1 removed")
	requireOneLineError(t, []string{"merchant", "webhook", "m1", "--remove"}, "not found")
	require.Contains(t, mustRun(t, "event", "list", "--status", "failed"), "webhook removed")
}
