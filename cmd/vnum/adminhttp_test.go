package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/sipua"
)

const adminToken = "admin-token-for-tests-0123456789"

// adminConfig is the default configuration on a fresh SQLite file with
// the admin API on a free loopback port.
func adminConfig(t *testing.T) *config.Config {
	t.Helper()
	c := config.Default()
	c.Store.DSN = filepath.Join(t.TempDir(), "vnum.db")
	c.Admin.Listen = "127.0.0.1:0"
	c.Admin.Token = adminToken
	return c
}

// openAdminStore opens c's store for the duration of the test.
func openAdminStore(t *testing.T, c *config.Config) *binding.Store {
	t.Helper()
	s, err := openStore(context.Background(), c, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// get fetches url with the given bearer token ("" for none).
func get(t *testing.T, url, token string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

// startTestAdmin starts the admin API on c and stops it at cleanup.
func startTestAdmin(t *testing.T, c *config.Config, s *binding.Store, stats callStats) string {
	t.Helper()
	stop, addr, err := startAdmin(context.Background(), c, s, func() []callrec.LiveCall { return nil },
		s.Ping, stats, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, stop(ctx))
	})
	return "http://" + addr
}

func TestStartAdminRefusesExposedWithoutToken(t *testing.T) {
	t.Parallel()
	c := adminConfig(t)
	s := openAdminStore(t, c)
	log := slog.New(slog.DiscardHandler)
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:8080", "vnum.example:8080"} {
		c.Admin.Listen, c.Admin.Token = listen, ""
		_, _, err := startAdmin(context.Background(), c, s, nil, nil, callStats{}, log)
		require.EqualError(t, err, "admin.listen: a non-loopback address needs admin.token", listen)
	}

	// With a token, all addresses are fine.
	c.Admin.Listen, c.Admin.Token = "0.0.0.0:0", adminToken
	url := startTestAdmin(t, c, s, callStats{})
	url = strings.Replace(url, "0.0.0.0", "127.0.0.1", 1)
	status, _ := get(t, url+"/v1/numbers", "")
	require.Equal(t, http.StatusUnauthorized, status)
	status, body := get(t, url+"/v1/numbers", adminToken)
	require.Equal(t, http.StatusOK, status, body)
	require.JSONEq(t, "[]", body)

	// Loopback without a token is allowed.
	c.Admin.Listen, c.Admin.Token = "127.0.0.1:0", ""
	url = startTestAdmin(t, c, s, callStats{})
	status, _ = get(t, url+"/v1/numbers", "")
	require.Equal(t, http.StatusOK, status)

	// An empty admin.listen disables the API.
	c.Admin.Listen = ""
	stop, addr, err := startAdmin(context.Background(), c, s, nil, nil, callStats{}, log)
	require.NoError(t, err)
	require.Empty(t, addr)
	require.NoError(t, stop(context.Background()))
}

func TestIsLoopbackListen(t *testing.T) {
	t.Parallel()
	for hp, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true, "127.0.0.2:1": true,
		"0.0.0.0:8080": false, ":8080": false, "[::]:8080": false, "10.1.2.3:8080": false,
		"admin.example:8080": false, "8080": false,
	} {
		require.Equal(t, want, isLoopbackListen(hp), hp)
	}
}

func TestAdminMetrics(t *testing.T) {
	t.Parallel()
	c := adminConfig(t)
	s := openAdminStore(t, c)
	url := startTestAdmin(t, c, s, callStats{
		active:          func() int { return 3 },
		total:           func() int64 { return 42 },
		messagesRefused: func() int64 { return 7 },
		panics:          func() int64 { return 2 },
		pendingCDRs:     func() int { return 4 },
		queueDelay:      func() time.Duration { return 250 * time.Millisecond },
		relay: func() media.RelayCounts {
			return media.RelayCounts{Received: 24, Relayed: 10, RelayedKernel: 3, Dropped: map[media.DropReason]uint64{
				media.DropNotRTP: 1, media.DropNoBridge: 2, media.DropNoRemote: 3, media.DropSendError: 1, media.DropPanic: 0,
				media.DropForeignSource: 4}, ForeignRTCP: 5}
		},
		malformed: func() map[string]int64 { return map[string]int64{"udp": 5, "tcp": 1} },
		overLimit: func() map[string]int64 { return map[string]int64{"same_header": 2, "body": 0} },
		events: func() map[[2]string]int64 {
			return map[[2]string]int64{{"call.ended", "delivered"}: 3, {"call.started", "retried"}: 1}
		},
		eventsPending: func(context.Context) (int, error) { return 5, nil },
	})
	status, body := get(t, url+"/metrics", "")
	require.Equal(t, http.StatusOK, status)
	for _, want := range []string{"vnum_calls_active 3", "vnum_calls_total 42", "vnum_messages_refused_total 7", "vnum_sip_panics_total 2", "vnum_cdrs_pending 4",
		"vnum_sip_queue_delay_seconds 0.25", "go_goroutines ", "process_start_time_seconds ",
		"vnum_rtp_packets_received_total 24", `vnum_rtp_packets_relayed_total{path="user"} 10`, `vnum_rtp_packets_relayed_total{path="kernel"} 3`,
		`vnum_rtp_packets_dropped_total{reason="not_rtp"} 1`, `vnum_rtp_packets_dropped_total{reason="no_bridge"} 2`,
		`vnum_rtp_packets_dropped_total{reason="no_remote"} 3`, `vnum_rtp_packets_dropped_total{reason="send_error"} 1`,
		`vnum_rtp_packets_dropped_total{reason="panic"} 0`, `vnum_rtp_packets_dropped_total{reason="foreign_source"} 4`,
		`vnum_rtcp_packets_dropped_total{reason="foreign_source"} 5`,
		`vnum_sip_malformed_total{transport="udp"} 5`, `vnum_sip_malformed_total{transport="tcp"} 1`,
		`vnum_sip_over_limit_total{limit="same_header"} 2`, `vnum_sip_over_limit_total{limit="body"} 0`,
		`vnum_events_total{outcome="delivered",type="call.ended"} 3`, `vnum_events_total{outcome="retried",type="call.started"} 1`,
		"vnum_events_pending 5"} {
		require.Contains(t, body, want)
	}
	status, body = get(t, url+"/healthz", "")
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"status":"ok"}`, body)
	status, _ = get(t, url+"/readyz", "")
	require.Equal(t, http.StatusOK, status)
}

// TestAdminMatchesCLI: the CSV export has the CLI's header and rows, the
// bill has the CLI's figures, and neither shows the consignee.
func TestAdminMatchesCLI(t *testing.T) {
	dsn := useTempStore(t)
	mustRun(t, "merchant", "add", "m1", "--name", "Shop One")
	mustRun(t, "number", "add", "17000000001")
	out := mustRun(t, "binding", "create", "--merchant", "m1", "--order", "o-1", "--consignee", consignee,
		"--order-status", "shipped", "--format", "json")
	var b map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &b))

	c := adminConfig(t)
	c.Store.DSN = dsn
	s := openAdminStore(t, c)
	ctx := context.Background()
	rates, err := ratesOf(c)
	require.NoError(t, err)
	start := time.Now().Add(-time.Hour)
	call := &callrec.Record{CallID: "call-1", Merchant: "m1", BindingID: b["id"].(string), Order: "o-1",
		Host: "17000000001", Extension: b["extension"].(string), Direction: callrec.DirectionToConsignee,
		Caller: "alice", StartedAt: start, AnsweredAt: start.Add(5 * time.Second)}
	require.NoError(t, s.StartCDR(ctx, call))
	call.EndedAt = call.AnsweredAt.Add(61 * time.Second)
	require.NoError(t, s.FinishCDR(ctx, call, rates))
	url := startTestAdmin(t, c, s, callStats{})

	cliCSV := mustRun(t, "cdr", "list", "--format", "csv")
	status, apiCSV := get(t, url+"/v1/cdrs", adminToken, "Accept", "text/csv")
	require.Equal(t, http.StatusOK, status)
	cliRecs, err := csv.NewReader(strings.NewReader(cliCSV)).ReadAll()
	require.NoError(t, err)
	apiRecs, err := csv.NewReader(strings.NewReader(apiCSV)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, cliRecs[0], apiRecs[0], "CSV header")
	require.Equal(t, cliRecs, apiRecs)

	loc, err := time.LoadLocation(c.Billing.Timezone)
	require.NoError(t, err)
	month := start.In(loc).Format("2006-01")
	cliBill := mustRun(t, "bill", "--merchant", "m1", "--month", month, "--format", "json")
	status, apiBill := get(t, url+"/v1/bills/m1/"+month, adminToken)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, cliBill, apiBill)
	require.Contains(t, apiBill, `"minutes":2`)

	status, apiBinding := get(t, url+"/v1/bindings/"+b["id"].(string), adminToken)
	require.Equal(t, http.StatusOK, status)
	for _, body := range []string{apiCSV, apiBill, apiBinding} {
		require.NotRegexp(t, regexp.MustCompile(`1\D?38\D?0013\D?8000`), body)
	}
}

// TestServeWithAdmin runs `vnum serve` in process: the admin API comes up
// with the node, reports it ready, not ready while the outbound trunk
// leaves its keepalives unanswered, and goes away on shutdown.
func TestServeWithAdmin(t *testing.T) {
	t.Parallel()
	c := adminConfig(t)
	c.SIP.Listen = []string{"udp://127.0.0.1:0"}
	carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
	require.NoError(t, err)
	t.Cleanup(carrier.Close)
	c.Trunk.Outbound = "sip:" + carrier.Addr.String() + ";transport=udp"
	c.Trunk.Keepalive = time.Second
	require.NoError(t, c.Validate()) // no call is placed: its RTP range is never used

	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan struct{})
	served := make(chan error, 1)
	go func() { served <- serve(ctx, c, log, func(*node) { close(up) }) }()
	select {
	case <-up:
	case err := <-served:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not come up")
	}
	url := "http://" + logField(t, logs.String(), "vnum serving", "admin")
	// The store was new: serve says so rather than run silently on it.
	require.Equal(t, c.Store.DSN, logField(t, logs.String(), "created a new, empty store", "store.dsn"))

	status, body := get(t, url+"/readyz", "")
	require.Equal(t, http.StatusOK, status, body)
	status, body = get(t, url+"/v1/calls", adminToken)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, "[]", body)
	status, body = get(t, url+"/metrics", "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "vnum_calls_active 0")
	require.Contains(t, body, "vnum_trunk_up 1")
	require.Contains(t, body, "vnum_sip_tcp_connections 0")
	require.Contains(t, body, "vnum_events_pending 0", "serve runs the event workers")
	require.Regexp(t, `(?m)^vnum_sip_tcp_connections_limit [1-9]`, body)
	for _, reason := range []string{"per_source", "total", "idle", "slow", "stalled"} {
		require.Contains(t, body, `vnum_sip_tcp_refused_total{reason="`+reason+`"} 0`)
	}
	// The descriptor budget is logged once, at start.
	require.Equal(t, 1, strings.Count(logs.String(), `"msg":"descriptor budget"`), logs.String())

	// The carrier goes away: three keepalives later the node is not ready,
	// and says why.
	carrier.Close()
	require.Eventually(t, func() bool {
		status, body = get(t, url+"/readyz", "")
		return status == http.StatusServiceUnavailable
	}, 30*time.Second, 100*time.Millisecond)
	require.Contains(t, body, "trunk down")
	_, body = get(t, url+"/metrics", "")
	require.Contains(t, body, "vnum_trunk_up 0")
	require.Contains(t, logs.String(), `"level":"WARN","msg":"trunk down: keepalives unanswered"`)

	cancel()
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	_, err = http.Get(url + "/healthz")
	require.Error(t, err, "the admin API stops with serve")
}

// TestServeNeedsTrunk: serve without trunk.outbound would fail every
// call at leg B; it refuses to start, with one line naming the key.
func TestServeNeedsTrunk(t *testing.T) {
	dsn := useTempStore(t)
	requireOneLineError(t, []string{"serve"}, "trunk.outbound: empty; serve needs the carrier's SIP URI")
	_, err := os.Stat(dsn)
	require.ErrorIs(t, err, os.ErrNotExist, "refused before the store was made")
}

// logField returns field of the first JSON log line with message msg.
func logField(t *testing.T, logs, msg, field string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		if line["msg"] == msg {
			v, ok := line[field].(string)
			require.True(t, ok, "%s has no %s: %s", msg, field, sc.Text())
			return v
		}
	}
	t.Fatalf("no %q line in the log:\n%s", msg, logs)
	return ""
}

// lockedBuffer is a bytes.Buffer written by the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
