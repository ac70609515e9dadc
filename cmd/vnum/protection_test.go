package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/testwav"
)

// cliOut collects everything the commands of a test printed, for the
// privacy scan at its end.
type cliOut struct {
	t   *testing.T
	all strings.Builder
}

// run runs the CLI, requiring success.
func (c *cliOut) run(args ...string) string {
	c.t.Helper()
	out := mustRun(c.t, args...)
	c.all.WriteString(out)
	return out
}

// fail runs the CLI, requiring one line on stderr that contains want.
func (c *cliOut) fail(want string, args ...string) {
	c.t.Helper()
	out, errOut, err := runCLI(c.t, args...)
	c.all.WriteString(out + errOut)
	require.Error(c.t, err, "vnum %s", strings.Join(args, " "))
	require.Empty(c.t, out)
	require.True(c.t, strings.HasPrefix(errOut, "vnum: "), errOut)
	require.Equal(c.t, 1, strings.Count(errOut, "\n"), errOut)
	require.Contains(c.t, errOut, want)
}

// noConsignee fails the test if any output carried the consignee.
func (c *cliOut) noConsignee() {
	c.t.Helper()
	require.NotRegexp(c.t, regexp.MustCompile(`1\D?38\D?0013\D?8000`), c.all.String())
}

// bindingIn creates a binding and returns its JSON.
func (c *cliOut) bindingIn(merchant, order string, extra ...string) map[string]any {
	c.t.Helper()
	out := c.run(append([]string{"binding", "create", "--merchant", merchant, "--order", order, "--consignee", consignee,
		"--order-status", "shipped", "--format", "json"}, extra...)...)
	var b map[string]any
	require.NoError(c.t, json.Unmarshal([]byte(out), &b))
	return b
}

func seedCLI(c *cliOut) {
	c.t.Helper()
	c.run("merchant", "add", "m1", "--name", "Shop One")
	c.run("merchant", "add", "m2", "--name", "Shop Two")
	c.run("number", "add", "17000000001", "700123456789012")
}

// TestOrderStatusCLI: binding status moves the order; a forbidden move
// and an unknown status are one line each and change nothing; calls
// makes a binding one-way.
func TestOrderStatusCLI(t *testing.T) {
	useTempStore(t)
	t.Setenv("VNUM_PROTECTION_AFTER_CLOSE", "48h")
	c := &cliOut{t: t}
	seedCLI(c)
	b := c.bindingIn("m1", "o-1", "--calls", "to_consignee")
	id := b["id"].(string)
	require.Equal(t, "to_consignee", b["calls"])

	c.fail("order status cannot move from shipped to closed: from shipped it moves to delivered",
		"binding", "status", id, "--order-status", "closed")
	c.fail(`invalid order status "recieved": unknown; want shipped, delivered, closed or after_sale`,
		"binding", "status", id, "--order-status", "recieved")
	c.fail("required flag", "binding", "status", id)
	require.Contains(t, c.run("binding", "show", id), "shipped")

	c.run("binding", "status", id, "--order-status", "delivered")
	var closed map[string]any
	require.NoError(t, json.Unmarshal([]byte(c.run("binding", "status", id, "--order-status", "closed", "--format", "json")), &closed))
	require.Equal(t, "closed", closed["order_status"])
	require.NotNil(t, closed["order_closed_at"])
	require.Less(t, closed["expires_at"].(string), b["expires_at"].(string), "the end is 48h after closing")
	out := c.run("binding", "show", id, "--format", "csv")
	require.Contains(t, out, "order_closed_at")
	require.Contains(t, out, "to_consignee")
	c.fail(`invalid calls "sideways"`, "binding", "create", "--merchant", "m1", "--order", "o-2", "--consignee", consignee,
		"--order-status", "shipped", "--calls", "sideways")
	c.noConsignee()
}

// TestMerchantProtectionCLI: a merchant's own protection is set part by
// part, shown with the platform's and what is in force; a looser value
// is one line and stores nothing.
func TestMerchantProtectionCLI(t *testing.T) {
	useTempStore(t)
	t.Setenv("VNUM_PROTECTION_QUIET_HOURS", "21:00-08:00")
	t.Setenv("VNUM_PROTECTION_CALLS_PER_DAY", "3")
	t.Setenv("VNUM_PROTECTION_ANNOUNCE", "inform")
	c := &cliOut{t: t}
	seedCLI(c)

	out := c.run("merchant", "protection", "m1", "--show")
	require.Regexp(t, `quiet_hours\s+21:00-08:00\s+-\s+21:00-08:00\s+no`, out)
	out = c.run("merchant", "protection", "m1", "--quiet-hours", "12:00-14:00", "--calls-per-day", "2")
	require.Regexp(t, `quiet_hours\s+21:00-08:00 12:00-14:00\s+12:00-14:00\s+21:00-08:00\s+yes`, out)
	require.Regexp(t, `calls_per_day\s+2\s+2\s+3\s+yes`, out)
	out = c.run("merchant", "protection", "m1", "--announce", "confirm", "--record")
	require.Regexp(t, `calls_per_day\s+2\s+2\s+3\s+yes`, out, "earlier parts stay")
	require.Regexp(t, `announce\s+confirm\s+confirm\s+inform\s+yes`, out)
	require.Regexp(t, `record\s+true\s+true`, out)

	before := c.run("merchant", "protection", "m1", "--format", "json")
	c.fail("calls_per_day 4 is above the platform's 3", "merchant", "protection", "m1", "--calls-per-day", "4")
	c.fail("announce off is weaker than the platform's inform", "merchant", "protection", "m1", "--announce", "off")
	c.fail(`--quiet-hours: invalid protection quiet hours "noon"`, "merchant", "protection", "m1", "--quiet-hours", "noon")
	c.fail("--show shows", "merchant", "protection", "m1", "--show", "--calls-per-day", "1")
	c.fail("not found", "merchant", "protection", "m9", "--show")
	require.Equal(t, before, c.run("merchant", "protection", "m1", "--format", "json"), "nothing stored")
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(before), &v))
	require.Equal(t, []any{"quiet_hours", "calls_per_day", "announce", "record"}, v["from_merchant"])

	out = c.run("merchant", "protection", "m1", "--quiet-hours", "", "--calls-per-day", "0", "--announce", "", "--record=false")
	require.Regexp(t, `calls_per_day\s+3\s+-\s+3\s+no`, out)
}

// clipFile writes a WAV file of n 8 kHz frames in WAV format tag, with
// channels channels.
func clipFile(t *testing.T, tag, channels uint16, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "clip.wav")
	require.NoError(t, os.WriteFile(p, testwav.Audio(tag, channels, 8000, n), 0o600))
	return p
}

// TestAnnouncementCLI: a clip is stored and removed; a bad one is one
// line naming the file and what it is.
func TestAnnouncementCLI(t *testing.T) {
	useTempStore(t)
	c := &cliOut{t: t}
	seedCLI(c)
	require.Equal(t, "announcement of merchant m1 stored: alaw, 2.0 s\n",
		c.run("merchant", "announcement", "m1", clipFile(t, 6, 1, 16000)))
	stereo := clipFile(t, 1, 2, 100)
	c.fail(stereo+": announcement refused: it has 2 channels; want a WAV file, 8 kHz mono",
		"merchant", "announcement", "m1", stereo)
	c.fail("lasts 6.0 s", "merchant", "announcement", "m1", clipFile(t, 7, 1, 48000))
	c.fail("no such file", "merchant", "announcement", "m1", filepath.Join(t.TempDir(), "missing.wav"))
	c.fail("want FILE.wav, or --remove", "merchant", "announcement", "m1")
	c.fail("not both", "merchant", "announcement", "m1", stereo, "--remove")
	require.Equal(t, "announcement of merchant m1 removed\n", c.run("merchant", "announcement", "m1", "--remove"))
	c.fail("it has none", "merchant", "announcement", "m1", "--remove")
}

// TestBlockCLI: blocks are made through a binding, listed without the
// consignee and removed.
func TestBlockCLI(t *testing.T) {
	useTempStore(t)
	c := &cliOut{t: t}
	seedCLI(c)
	b1 := c.bindingIn("m1", "o-1")["id"].(string)
	b2 := c.bindingIn("m2", "o-2")["id"].(string)

	var blk map[string]any
	require.NoError(t, json.Unmarshal([]byte(c.run("block", "add", "--binding", b1, "--format", "json")), &blk))
	require.Equal(t, "m1", blk["merchant"])
	require.Equal(t, "", blk["caller"])
	require.Equal(t, "operator", blk["source"])
	out := c.run("block", "add", "--binding", b2, "--caller", "+86 137 0013 7000")
	require.Contains(t, out, "+8613700137000")

	c.fail("already blocked", "block", "add", "--binding", b1)
	c.fail("not a phone number", "block", "add", "--binding", b1, "--caller", "courier")
	c.fail("not found", "block", "add", "--binding", "b_0000000000000000")
	c.fail("required flag", "block", "add")

	out = c.run("block", "list")
	require.Contains(t, out, "(merchant)")
	require.Equal(t, 3, strings.Count(out, "\n"), out)
	out = c.run("block", "list", "--merchant", "m2", "--format", "csv")
	require.Equal(t, 2, strings.Count(out, "\n"), out)
	require.Contains(t, out, b2)
	c.fail("not found", "block", "list", "--merchant", "m9")

	require.Equal(t, "block "+blk["id"].(string)+" removed\n", c.run("block", "remove", blk["id"].(string)))
	c.fail("not found", "block", "remove", blk["id"].(string))
	require.Equal(t, 2, strings.Count(c.run("block", "list"), "\n"))
	c.noConsignee()
}
