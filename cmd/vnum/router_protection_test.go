package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/protection"
	"github.com/vnum/vnum/sip"
)

// TestRouterProtection: the router gives signalling consignee protection
// as configured, counted in the node's store; a reload of protection.*
// puts the new policy in force for the next call; the consignee's block
// and the merchant's clip reach it as they will need them.
func TestRouterProtection(t *testing.T) {
	var running *config.Config
	n, carrier, _ := startTestNode(t, func(c *config.Config) {
		c.Protection.CallsPerDay = 1
		c.Protection.Announce = "inform"
		running = c
	})
	ctx := context.Background()
	mustRun(t, "merchant", "add", "m1")
	mustRun(t, "number", "add", "17000000001")
	var b struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "binding", "create", "--merchant", "m1", "--order", "o-1",
		"--consignee", consignee, "--order-status", "shipped", "--format", "json")), &b))
	ring := callrec.Ring{BindingID: b.ID, CallerKind: callrec.CallerAccount, Caller: "alice"}

	d, err := n.router.TakeRing(ctx, ring)
	require.NoError(t, err)
	require.True(t, d.Allowed())
	require.Equal(t, protection.AnnounceInform, d.Policy.Announce)
	d, err = n.router.TakeRing(ctx, ring)
	require.NoError(t, err)
	require.Equal(t, protection.Capped, d.Verdict)

	// A reload raises the cap: the next call rings.
	file := filepath.Join(t.TempDir(), "vnum.yaml")
	require.NoError(t, os.WriteFile(file, []byte("trunk:\n  outbound: sip:"+carrier.Addr.String()+
		";transport=udp\nprotection:\n  calls_per_day: 3\n  announce: confirm\n  block_key: \"#\"\n"), 0o600))
	next := reloadNode(file, running, n, slog.New(slog.DiscardHandler))
	require.Equal(t, 3, next.Protection.CallsPerDay)
	d, err = n.router.TakeRing(ctx, ring)
	require.NoError(t, err)
	require.True(t, d.Allowed(), d.Reason)
	require.Equal(t, protection.AnnounceConfirm, d.Policy.Announce)
	require.Equal(t, "#", d.Policy.BlockKey)
	require.Equal(t, 3, n.router.platformNow().CallsPerDay)

	// A reload that does not validate changes nothing.
	require.NoError(t, os.WriteFile(file, []byte("trunk:\n  outbound: sip:"+carrier.Addr.String()+
		";transport=udp\nprotection:\n  quiet_hours: evenings\n"), 0o600))
	require.Same(t, next, reloadNode(file, next, n, slog.New(slog.DiscardHandler)))
	require.Equal(t, 3, n.router.platformNow().CallsPerDay)

	// The consignee keys 9: the merchant is blocked for them.
	created, err := n.router.BlockCaller(ctx, b.ID, "", callrec.CallerAccount, "alice")
	require.NoError(t, err)
	require.True(t, created)
	created, err = n.router.BlockCaller(ctx, b.ID, "", callrec.CallerAccount, "alice")
	require.NoError(t, err)
	require.False(t, created)
	d, err = n.router.TakeRing(ctx, ring)
	require.NoError(t, err)
	require.Equal(t, protection.Blocked, d.Verdict)
	require.Contains(t, mustRun(t, "block", "list"), "consignee")

	// The merchant's clip, decoded for the notice; none is nil.
	pcm, err := n.router.Announcement(ctx, "m1")
	require.NoError(t, err)
	require.Nil(t, pcm)
	mustRun(t, "merchant", "announcement", "m1", clipFile(t, 6, 1, 800))
	pcm, err = n.router.Announcement(ctx, "m1")
	require.NoError(t, err)
	require.Len(t, pcm, 800)
	notice, err := media.Notice{Clip: pcm, OrderDigits: protection.OrderDigits("o-1"), Confirm: true}.Samples("en")
	require.NoError(t, err)
	require.Greater(t, len(notice), 800+media.SampleRate)

	// A store that does not answer is the store being slow.
	short, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-short.Done()
	_, err = n.router.TakeRing(short, ring)
	require.ErrorIs(t, err, sip.ErrStoreSlow)
}

// TestAdminProtection: the admin API applies the configured platform
// protection: GET shows it, and a merchant's looser value is refused.
func TestAdminProtection(t *testing.T) {
	t.Parallel()
	c := adminConfig(t)
	c.Protection.CallsPerDay = 2
	c.Protection.QuietHours = "21:00-08:00"
	require.NoError(t, c.Validate())
	s := openAdminStore(t, c)
	require.NoError(t, s.AddMerchant(context.Background(), "m1", "Shop One"))
	url := startTestAdmin(t, c, s, callStats{}) + "/v1/merchants/m1/protection"

	status, body := get(t, url, adminToken)
	require.Equal(t, http.StatusOK, status, body)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	require.EqualValues(t, 2, v["calls_per_day"])
	require.Equal(t, []any{"21:00-08:00"}, v["quiet_hours"])

	put := func(body string) int {
		req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		return res.StatusCode
	}
	require.Equal(t, http.StatusBadRequest, put(`{"calls_per_day": 3}`), "above the configured cap")
	require.Equal(t, http.StatusOK, put(`{"calls_per_day": 1}`))
}
