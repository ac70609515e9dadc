package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/sipua"
)

// TestCallThroughServe runs a node on a real SQLite file, changes the store
// with the CLI while it runs, and places a real call through it: the new
// account and binding work at once, the carrier sees B and X only, and the
// CDR shows one answered, billed minute.
func TestCallThroughServe(t *testing.T) {
	n, carrier, vnum := startTestNode(t, func(c *config.Config) { c.Node.ID = "vnum-e2e" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	mustRun(t, "merchant", "add", "m1", "--name", "Shop One")
	mustRun(t, "account", "add", "m1", "alice", "--password", "alice-secret")
	mustRun(t, "number", "add", "17000000001")
	var b struct {
		ID, Host, Extension string
	}
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "binding", "create", "--merchant", "m1", "--order", "o1",
		"--consignee", consignee, "--order-status", "shipped", "--format", "json")), &b))

	phone, err := sipua.NewSoftphone("alice", "alice-secret", nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	d, err := phone.Call(ctx, vnum, b.Host)
	require.NoError(t, err)
	media, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	require.NoError(t, sipua.SendDigits(phone.RTP, media, 101, b.Extension))

	inv, err := carrier.NextInvite(15 * time.Second)
	require.NoError(t, err)
	require.Equal(t, consignee, inv.Recipient.User)
	require.Equal(t, b.Host, inv.From().Address.User)
	_, err = carrier.NextSession(15 * time.Second)
	require.NoError(t, err)
	// Releasing the binding never cuts the call that resolved it (README "Bindings").
	mustRun(t, "binding", "release", b.ID)
	require.NoError(t, sipua.SendAudio(ctx, phone.RTP, media, 1, 50))
	require.Equal(t, 1, n.sip.ActiveCalls(), "the call goes on after the release")
	require.NoError(t, d.Bye(ctx))
	require.Eventually(t, func() bool { return n.sip.ActiveCalls() == 0 && n.ports.InUse() == 0 }, 10*time.Second, 20*time.Millisecond)

	out := mustRun(t, "cdr", "list", "--format", "json")
	require.NotContains(t, out, consignee)
	var cdrs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &cdrs))
	require.Len(t, cdrs, 1)
	row := cdrs[0]
	require.Equal(t, "answered", row["disposition"])
	require.EqualValues(t, 1, row["billed_minutes"])
	require.Equal(t, "0.02000", row["fee"])
	require.Equal(t, "caller", row["hangup_by"])
	require.Equal(t, "alice", row["caller"])
	require.Equal(t, b.ID, row["binding"])
	require.Equal(t, "vnum-e2e", row["node"], "the row names the node that took the call (node.id)")
	require.GreaterOrEqual(t, row["talk_seconds"], float64(1))

	// The released (X, E) is in quarantine: a new call hears "expired"
	// as early media and gets 410 Gone, never an answer.
	_, err = phone.Call(ctx, vnum, b.Host+"-"+b.Extension)
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(t, err, &dr)
	require.Equal(t, 410, dr.Res.StatusCode)
	require.Contains(t, dr.Res.GetHeader("Reason").Value(), "Q.850;cause=22")
	require.Eventually(t, func() bool { return n.sip.ActiveCalls() == 0 }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "cdr", "list", "--format", "json")), &cdrs))
	require.Len(t, cdrs, 2)
	dispositions := []any{cdrs[0]["disposition"], cdrs[1]["disposition"]}
	require.ElementsMatch(t, []any{"answered", "expired"}, dispositions)

	for _, m := range phone.Received() {
		require.NotContains(t, m, consignee, "the caller saw B")
	}
	for _, m := range carrier.Received() {
		require.NotContains(t, m, "alice", "the carrier saw the caller")
	}
}

// startTestNode runs a node on a fresh SQLite file (VNUM_STORE_DSN, shared
// with the CLI) with a simulated carrier as its trunk.
func startTestNode(t *testing.T, tweak func(*config.Config)) (*node, *sipua.Carrier, netip.AddrPort) {
	t.Helper()
	useTempStore(t)
	return startTestNodeOnStore(t, tweak)
}

// startTestNodeOnStore runs a node on the store VNUM_STORE_DRIVER and
// VNUM_STORE_DSN name (the CLI's too), with a simulated carrier of its
// own as its trunk.
func startTestNodeOnStore(t *testing.T, tweak func(*config.Config)) (*node, *sipua.Carrier, netip.AddrPort) {
	t.Helper()
	carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
	require.NoError(t, err)
	t.Cleanup(carrier.Close)
	c := config.Default()
	c.SIP.Listen = []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0"}
	c.Store.DSN = os.Getenv("VNUM_STORE_DSN")
	if d := os.Getenv("VNUM_STORE_DRIVER"); d != "" {
		c.Store.Driver = d
	}
	c.Trunk.Outbound = "sip:" + carrier.Addr.String() + ";transport=udp"
	c.IVR.Language = "en"
	if tweak != nil {
		tweak(c)
	}
	require.NoError(t, c.Validate())
	ports, err := media.NewPorts(c.Media.IP, 0, 0) // pairs of the kernel's choosing
	require.NoError(t, err)
	n, err := startNodeWith(context.Background(), c, slog.New(slog.DiscardHandler), false, ports)
	require.NoError(t, err)
	t.Cleanup(func() { n.stop(context.Background()) })
	return n, carrier, netip.MustParseAddrPort(n.sip.Addr("udp"))
}

// TestCallbackThroughServe: a courier reaches the consignee over the trunk;
// the consignee calls X back from the bound number and reaches the courier.
// Whom a call back dials is decided by what the last caller was, as its
// record says, not by what its string looks like: a courier whose number
// is also the user name of one of the merchant's SIP accounts is still
// reached on the trunk.
func TestCallbackThroughServe(t *testing.T) {
	for name, lookalike := range map[string]bool{"courier": false, "courier named like an account": true} {
		t.Run(name, func(t *testing.T) {
			n, carrier, vnum := startTestNode(t, func(c *config.Config) { c.Trunk.InboundCIDRs = []string{"127.0.0.0/8"} })
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			mustRun(t, "merchant", "add", "m1", "--name", "Shop One")
			mustRun(t, "account", "add", "m1", "alice", "--password", "alice-secret")
			if lookalike {
				mustRun(t, "account", "add", "m1", "+8613700137000", "--password", "lookalike-secret")
			}
			mustRun(t, "number", "add", "17000000001")
			var b struct{ Host, Extension string }
			require.NoError(t, json.Unmarshal([]byte(mustRun(t, "binding", "create", "--merchant", "m1", "--order", "o1",
				"--consignee", consignee, "--order-status", "shipped", "--format", "json")), &b))

			call := func(p *sipua.Softphone, dialled string) {
				t.Helper()
				d, err := p.Call(ctx, vnum, dialled)
				require.NoError(t, err)
				_, err = carrier.NextSession(15 * time.Second)
				require.NoError(t, err)
				require.NoError(t, d.Bye(ctx))
				require.Eventually(t, func() bool { return n.sip.ActiveCalls() == 0 }, 10*time.Second, 20*time.Millisecond)
			}
			courier, err := sipua.NewSoftphone("13700137000", "", nil)
			require.NoError(t, err)
			t.Cleanup(courier.Close)
			call(courier, b.Host+"-"+b.Extension)
			inv, err := carrier.NextInvite(time.Second)
			require.NoError(t, err)
			require.Equal(t, consignee, inv.Recipient.User)

			consigneePhone, err := sipua.NewSoftphone(consignee, "", nil)
			require.NoError(t, err)
			t.Cleanup(consigneePhone.Close)
			call(consigneePhone, b.Host)
			inv, err = carrier.NextInvite(time.Second)
			require.NoError(t, err)
			require.Equal(t, "13700137000", inv.Recipient.User, "the callback reaches the courier on the trunk")
			require.Equal(t, b.Host, inv.From().Address.User)

			out := mustRun(t, "cdr", "list", "--format", "json")
			require.NotContains(t, out, consignee)
			var cdrs []map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &cdrs))
			require.Len(t, cdrs, 2)
			directions := []any{cdrs[0]["direction"], cdrs[1]["direction"]}
			require.ElementsMatch(t, []any{"to_consignee", "callback"}, directions)
			for _, c := range cdrs {
				require.NotContains(t, c, "caller_kind", "the JSON export keeps the CDR fields the README lists")
			}
		})
	}
}

// TestDemo runs `vnum demo` in process: it must succeed and show its CDRs.
func TestDemo(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := runDemo(ctx, &out, "en", time.Second, time.Now)
	require.NoError(t, err, out.String())
	s := out.String()
	require.Contains(t, s, "demo OK")
	require.Contains(t, s, "answered")
	require.Contains(t, s, "invalid_extension")
	require.Contains(t, s, "486 Busy Here, Reason: Q.850;cause=17", "a busy consignee is refused, never answered")
	require.Contains(t, s, "only when the consignee answered (answer supervision)")
	// The demo checks its bill against its CDRs; whatever the date, its
	// two bindings have begun exactly one binding-day each.
	require.Contains(t, s, "2 binding-day(s) × 0.00018")
}

// TestOverloadMetricsThroughServe: a node with calls.max_active 1 and a
// call in progress refuses a second call with 503 and Retry-After, and
// /metrics counts it under vnum_calls_refused_total{reason="max_active"},
// every other reason present at zero.
func TestOverloadMetricsThroughServe(t *testing.T) {
	n, _, vnum := startTestNode(t, func(c *config.Config) { c.Calls.MaxActive = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mustRun(t, "merchant", "add", "m1", "--name", "Shop One")
	mustRun(t, "account", "add", "m1", "alice", "--password", "alice-secret")
	mustRun(t, "number", "add", "17000000001")

	phone, err := sipua.NewSoftphone("alice", "alice-secret", nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	d, err := phone.Call(ctx, vnum, "17000000001") // the IVR answers and waits for E
	require.NoError(t, err)
	require.Equal(t, 1, n.sip.ActiveCalls())

	other, err := sipua.NewSoftphone("alice", "alice-secret", nil)
	require.NoError(t, err)
	t.Cleanup(other.Close)
	_, err = other.Call(ctx, vnum, "17000000001")
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(t, err, &dr)
	require.Equal(t, 503, dr.Res.StatusCode)
	require.NotNil(t, dr.Res.GetHeader("Retry-After"))

	c := config.Default()
	c.Admin.Listen = "127.0.0.1:0"
	url := startTestAdmin(t, c, n.store, n.stats())
	status, body := get(t, url+"/metrics", "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `vnum_calls_refused_total{reason="max_active"} 1`)
	for _, reason := range []string{"rtp_ports", "invite_rate", "saturated", "store_slow", "draining"} {
		require.Contains(t, body, `vnum_calls_refused_total{reason="`+reason+`"} 0`)
	}
	require.NoError(t, d.Bye(ctx))
}

// TestRelayMetricsThroughServe: a trunk caller's RTP through a served node
// shows in /metrics: every packet it sent is counted as received, as many
// as reached the carrier are counted as relayed, and received is relayed
// plus the drops.
func TestRelayMetricsThroughServe(t *testing.T) {
	n, carrier, vnum := startTestNode(t, func(c *config.Config) { c.Trunk.InboundCIDRs = []string{"127.0.0.0/8"} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mustRun(t, "merchant", "add", "m1", "--name", "Shop One")
	mustRun(t, "number", "add", "17000000001")
	var b struct{ Host, Extension string }
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "binding", "create", "--merchant", "m1", "--order", "o1",
		"--consignee", consignee, "--order-status", "shipped", "--format", "json")), &b))

	c := config.Default()
	c.Admin.Listen = "127.0.0.1:0"
	url := startTestAdmin(t, c, n.store, n.stats())
	_, body := get(t, url+"/metrics", "")
	require.Contains(t, body, "vnum_rtp_packets_received_total 0")

	courier, err := sipua.NewSoftphone("13700137000", "", nil)
	require.NoError(t, err)
	t.Cleanup(courier.Close)
	d, err := courier.Call(ctx, vnum, b.Host+"-"+b.Extension)
	require.NoError(t, err)
	to, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	_, err = carrier.NextSession(15 * time.Second)
	require.NoError(t, err)

	// Send until 20 packets reached the carrier: the first may still find
	// leg B without its relay for an instant after its 200.
	const ssrc = 0x5EED
	sent, relayed := 0, 0
	buf := make([]byte, 1500)
	for relayed < 20 && sent < 200 {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(sent), SSRC: ssrc},
			Payload: make([]byte, 160)}
		raw, err := pkt.Marshal()
		require.NoError(t, err)
		_, err = courier.RTP.WriteToUDPAddrPort(raw, to)
		require.NoError(t, err)
		sent++
		require.NoError(t, carrier.RTP.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
		for {
			k, _, err := carrier.RTP.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			var got rtp.Packet
			if got.Unmarshal(buf[:k]) == nil && got.SSRC == ssrc {
				relayed++
				break
			}
		}
	}
	require.Equal(t, 20, relayed, "packets that reached the carrier")

	metric := func(body, name string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
		require.NotNil(t, m, "no %s in /metrics", name)
		v, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		return v
	}
	// The reader counts a packet just after relaying it: wait for the last.
	require.Eventually(t, func() bool {
		_, body = get(t, url+"/metrics", "")
		return metric(body, "vnum_rtp_packets_received_total") == float64(sent)
	}, 5*time.Second, 10*time.Millisecond, "every packet sent is counted as received")
	require.Equal(t, float64(relayed), metric(body, `vnum_rtp_packets_relayed_total{path="user"}`))
	require.Zero(t, metric(body, `vnum_rtp_packets_relayed_total{path="kernel"}`), "startNode loads no kernel relay: the node relays in user space")
	drops := 0.0
	for _, reason := range []string{"not_rtp", "no_bridge", "no_remote", "send_error", "panic", "foreign_source"} {
		drops += metric(body, `vnum_rtp_packets_dropped_total{reason="`+reason+`"}`)
	}
	require.Equal(t, float64(sent-relayed), drops, "received = relayed + dropped")
	require.NoError(t, d.Bye(ctx))
}

// TestWalkingRefusalRecorded: a caller refused for keying too many wrong
// extensions (403, security.invalid_extensions) leaves a CDR row in the
// store all the same, as every call attempt does, billed nothing.
func TestWalkingRefusalRecorded(t *testing.T) {
	_, _, vnum := startTestNode(t, func(c *config.Config) { c.Security.InvalidExtensions = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mustRun(t, "merchant", "add", "m1", "--name", "Shop One")
	mustRun(t, "account", "add", "m1", "alice", "--password", "alice-secret")
	mustRun(t, "number", "add", "17000000001")
	phone, err := sipua.NewSoftphone("alice", "alice-secret", nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	var dr *sipgo.ErrDialogResponse
	_, err = phone.Call(ctx, vnum, "17000000001-9999") // wrong: the one allowed
	require.ErrorAs(t, err, &dr)
	require.Equal(t, 404, dr.Res.StatusCode)
	_, err = phone.Call(ctx, vnum, "17000000001-9998")
	require.ErrorAs(t, err, &dr)
	require.Equal(t, 403, dr.Res.StatusCode, "refused for walking")
	var cdrs []map[string]any
	require.Eventually(t, func() bool {
		require.NoError(t, json.Unmarshal([]byte(mustRun(t, "cdr", "list", "--format", "json")), &cdrs))
		return len(cdrs) == 2 && cdrs[1]["ended_at"] != nil
	}, 10*time.Second, 50*time.Millisecond)
	refused := cdrs[1]
	require.Equal(t, "invalid_extension", refused["disposition"])
	require.EqualValues(t, 403, refused["sip_status"])
	require.Equal(t, "0.00000", refused["fee"])
	require.Equal(t, "alice", refused["caller"])
	require.Equal(t, "9998", refused["extension"])
}
