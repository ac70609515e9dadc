package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/binding/api"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/events"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/protection"
)

// adminTimeouts are the timeouts of the admin HTTP server: a slow or
// stalled client cannot hold a connection (and a goroutine) for long.
type adminTimeouts struct {
	// readHeader and read bound reading a request's header and all of it.
	readHeader, read time.Duration
	// write bounds writing a whole response, except a streamed one.
	write time.Duration
	// stream bounds each write of a streamed response (the CDR and
	// binding listings), renewed while rows flow, instead of write: an
	// export of a million rows takes longer than any bound on the whole
	// response, and a timeout that cut it would leave the client with a
	// partial file. A client that stops reading is still let go.
	stream time.Duration
	// idle bounds a kept-alive connection between requests.
	idle time.Duration
}

// defaultAdminTimeouts are the admin server's timeouts.
var defaultAdminTimeouts = adminTimeouts{
	readHeader: 5 * time.Second,
	read:       30 * time.Second,
	write:      60 * time.Second,
	stream:     api.DefaultStreamIdle,
	idle:       2 * time.Minute,
}

// callStats feeds the call metrics; serve passes the SIP server's
// counters, tests pass constants.
type callStats struct {
	// active returns the calls in progress.
	active func() int
	// total returns the INVITEs that became calls since start.
	total func() int64
	// messagesRefused returns the MESSAGE requests refused (no SMS).
	messagesRefused func() int64
	// panics returns the panics recovered in SIP handling, each of which
	// ended only its own request or call.
	panics func() int64
	// refused returns the new INVITEs refused under overload, by reason
	// (README "SIP behaviour in short").
	refused func() map[string]int64
	// pendingCDRs returns the finished calls whose record waits for the
	// store to answer again.
	pendingCDRs func() int
	// queueDelay returns how long the SIP datagrams read last had waited
	// in their socket (the least of the last few).
	queueDelay func() time.Duration
	// relay returns the RTP packets the media relay has read, relayed and
	// dropped by reason.
	relay func() media.RelayCounts
	// trunkUp says whether the outbound trunk answers its keepalives.
	trunkUp func() (bool, string)
	// legBFailures returns leg B's failed attempts by final status.
	legBFailures func() map[string]int64
	// protected returns the calls consignee protection refused or the
	// consignee declined, by reason.
	protected func() map[string]int64
	// kpis are the telecom KPIs of calls and their media, kept where
	// they happen (sip.Server.Metrics).
	kpis []prometheus.Collector
	// tcpOpen and tcpLimit return the SIP TCP and TLS connections open
	// and their cap; tcpRefused those refused at accept or closed by
	// vnum, by reason.
	tcpOpen, tcpLimit func() int
	tcpRefused        func() map[string]int64
	// malformed returns the SIP messages that did not parse (or lacked
	// Via or CSeq), by transport.
	malformed func() map[string]int64
	// overLimit returns the SIP messages refused for going over a limit
	// on what one message may cost, by limit.
	overLimit func() map[string]int64
	// store times the store calls signalling makes; pool reads how full
	// the host-number pool is (storemetrics.go).
	store *storeMetrics
	pool  *poolCollector
	// auth returns the failed digest attempts and the sources blocked for
	// them since the start, and the sources blocked now.
	auth func() (failures, blocks int64, blockedNow int)
	// events returns this node's delivery attempts of call events by
	// (type, outcome); eventsPending counts the events waiting in the
	// outbox (eventworkers.go).
	events        func() map[[2]string]int64
	eventsPending func(context.Context) (int, error)
	// recordings returns the calls' recordings written since the start
	// and the bytes of their files (recording.go).
	recordings func() (written, bytes int64)
}

// newMetrics returns the Prometheus handler of a registry with the Go
// and process collectors and vnum's call metrics read from stats at each
// scrape.
func newMetrics(stats callStats) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	if stats.active != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "vnum", Name: "calls_active", Help: "Calls in progress.",
		}, func() float64 { return float64(stats.active()) }))
	}
	if stats.total != nil {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "vnum", Name: "calls_total", Help: "INVITEs that became calls since the start.",
		}, func() float64 { return float64(stats.total()) }))
	}
	if stats.messagesRefused != nil {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "vnum", Name: "messages_refused_total",
			Help: "SIP MESSAGE requests refused because virtual numbers carry no SMS.",
		}, func() float64 { return float64(stats.messagesRefused()) }))
	}
	if stats.pendingCDRs != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "vnum", Name: "cdrs_pending",
			Help: "Finished calls whose record waits for the store to answer again.",
		}, func() float64 { return float64(stats.pendingCDRs()) }))
	}
	if stats.queueDelay != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "vnum", Name: "sip_queue_delay_seconds",
			Help: "How long each of the SIP datagrams read last had waited in its UDP socket (the least of the last 8); above 0.1 new INVITEs are refused as saturated.",
		}, func() float64 { return stats.queueDelay().Seconds() }))
	}
	if stats.panics != nil {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "vnum", Name: "sip_panics_total",
			Help: "Panics recovered while handling SIP; each ended only its own request or call.",
		}, func() float64 { return float64(stats.panics()) }))
	}
	if stats.refused != nil {
		cs = append(cs, refusedCollector{
			desc: prometheus.NewDesc("vnum_calls_refused_total",
				"New INVITEs refused with 503 because vnum could not take one more call well, by reason.",
				[]string{"reason"}, nil),
			counts: stats.refused,
		})
	}
	if stats.relay != nil {
		cs = append(cs, newRelayCollector(stats.relay))
	}
	if stats.trunkUp != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "vnum", Name: "trunk_up",
			Help: "1 while the outbound trunk answers its OPTIONS keepalives, 0 after three in a row went unanswered.",
		}, func() float64 {
			if up, _ := stats.trunkUp(); up {
				return 1
			}
			return 0
		}))
	}
	if stats.legBFailures != nil {
		cs = append(cs, refusedCollector{
			desc: prometheus.NewDesc("vnum_leg_b_failures_total",
				"Calls to the consignee (or a callback's party) that did not connect, by the final status leg B ended with "+
					"(408: nothing answered within calls.ring_timeout; 503: the trunk could not be reached).",
				[]string{"status"}, nil),
			counts: withZeros(stats.legBFailures, legBStatuses...),
		})
	}
	if stats.protected != nil {
		cs = append(cs, refusedCollector{
			desc: prometheus.NewDesc("vnum_calls_protected_total",
				"Calls consignee protection refused before the consignee rang (quiet_hours, capped, blocked, restricted), "+
					"or the consignee declined after the notice (declined), by reason.",
				[]string{"reason"}, nil),
			counts: stats.protected,
		})
	}
	cs = append(cs, tcpCollectors(stats)...)
	cs = append(cs, stats.store.collectors()...)
	cs = append(cs, authCollectors(stats)...)
	cs = append(cs, stats.kpis...)
	if stats.pool != nil {
		cs = append(cs, stats.pool)
	}
	if stats.malformed != nil {
		cs = append(cs, refusedCollector{
			desc: prometheus.NewDesc("vnum_sip_malformed_total",
				"SIP messages dropped because they did not parse or had no Via or CSeq, by transport (each source logged at most once per 10 s, never with the payload).",
				[]string{"transport"}, nil),
			counts: stats.malformed,
		})
	}
	if stats.overLimit != nil {
		cs = append(cs, refusedCollector{
			desc: prometheus.NewDesc("vnum_sip_over_limit_total",
				"SIP messages refused for going over a limit on what one message may cost, by limit "+
					"(header_fields: over 256, same_header: over 71 of one name, 513; body: over 16 KiB, 413; media_lines: over 16 m= lines, 488).",
				[]string{"limit"}, nil),
			counts: stats.overLimit,
		})
	}
	cs = append(cs, eventCollectors(stats)...)
	cs = append(cs, recordingCollectors(stats)...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), nil
}

// tcpCollectors are the metrics of SIP's TCP and TLS connections
// (README "SIP behaviour in short").
func tcpCollectors(stats callStats) []prometheus.Collector {
	var cs []prometheus.Collector
	if stats.tcpOpen != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "vnum", Name: "sip_tcp_connections", Help: "SIP TCP and TLS connections open.",
		}, func() float64 { return float64(stats.tcpOpen()) }))
	}
	if stats.tcpLimit != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "vnum", Name: "sip_tcp_connections_limit",
			Help: "The cap on open SIP TCP and TLS connections: the descriptor limit less what media needs and a reserve.",
		}, func() float64 { return float64(stats.tcpLimit()) }))
	}
	if stats.tcpRefused != nil {
		cs = append(cs, refusedCollector{
			desc: prometheus.NewDesc("vnum_sip_tcp_refused_total",
				"SIP TCP and TLS connections refused at their accept, by reason: per_source (the source's cap), total (the process's cap); "+
					"or closed by vnum: idle (no message or keepalive in time), slow (a message not complete in time), "+
					"stalled (the peer did not take vnum's message in time).",
				[]string{"reason"}, nil),
			counts: stats.tcpRefused,
		})
	}
	return cs
}

// authCollectors are the metrics of digest authentication and the
// blocking of sources that keep failing it (security.auth_failures).
func authCollectors(stats callStats) []prometheus.Collector {
	if stats.auth == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "vnum", Name: "sip_auth_failures_total",
			Help: "Digest authentications that failed with wrong credentials, from sources outside trunk.inbound_cidrs (those that count towards a block).",
		}, func() float64 { f, _, _ := stats.auth(); return float64(f) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "vnum", Name: "sip_sources_blocked_total",
			Help: "Source addresses blocked for security.block_for after security.auth_failures failures within a minute.",
		}, func() float64 { _, b, _ := stats.auth(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "vnum", Name: "sip_sources_blocked",
			Help: "Source addresses blocked now for failing digest authentication.",
		}, func() float64 { _, _, n := stats.auth(); return float64(n) }),
	}
}

// legBStatuses are the final statuses leg B ends with most, shown at
// zero before their first failure so that a rate over them reads 0, not
// nothing (busy, no answer, unavailable, trunk unreachable, declined).
var legBStatuses = []string{"408", "480", "486", "503", "603"}

// withZeros returns counts with each of keys present, at zero when counts
// has none.
func withZeros(counts func() map[string]int64, keys ...string) func() map[string]int64 {
	return func() map[string]int64 {
		out := counts()
		if out == nil {
			out = make(map[string]int64, len(keys))
		}
		for _, k := range keys {
			if _, ok := out[k]; !ok {
				out[k] = 0
			}
		}
		return out
	}
}

// refusedCollector reads a counter with one label from the SIP server's
// counts at each scrape (vnum_calls_refused_total{reason},
// vnum_leg_b_failures_total{status}): the counts live where they happen,
// and a scrape copies them.
type refusedCollector struct {
	desc   *prometheus.Desc
	counts func() map[string]int64
}

func (c refusedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c refusedCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range c.counts() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), reason)
	}
}

// relayCollector reads the vnum_rtp_packets_* counters from the media
// relay's counts, once per scrape, so that within one scrape received is
// exactly relayed plus every dropped reason.
type relayCollector struct {
	received, relayed, dropped, rtcpDropped *prometheus.Desc
	counts                                  func() media.RelayCounts
}

func newRelayCollector(counts func() media.RelayCounts) relayCollector {
	return relayCollector{
		received: prometheus.NewDesc("vnum_rtp_packets_received_total",
			"RTP datagrams that reached the media ports of every call, both directions: read on their sockets, or relayed by the kernel before.", nil, nil),
		relayed: prometheus.NewDesc("vnum_rtp_packets_relayed_total",
			"RTP packets sent on to the other leg of their call, by path: user (read and sent by vnum) or kernel (forwarded by the kernel relay, media.kernel).",
			[]string{"path"}, nil),
		dropped: prometheus.NewDesc("vnum_rtp_packets_dropped_total",
			"RTP datagrams read but not relayed, by reason: not_rtp (not RTP version 2), no_bridge (the leg relays to no other yet: IVR digits), "+
				"no_remote (the other leg has no address, or is on hold), send_error, panic, "+
				"foreign_source (from another source than the one the leg learnt in its first seconds: someone outside the call).",
			[]string{"reason"}, nil),
		rtcpDropped: prometheus.NewDesc("vnum_rtcp_packets_dropped_total",
			"RTCP datagrams dropped, by reason: foreign_source (from another source than the leg's peer: someone outside the call).",
			[]string{"reason"}, nil),
		counts: counts,
	}
}

func (c relayCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.received
	ch <- c.relayed
	ch <- c.dropped
	ch <- c.rtcpDropped
}

func (c relayCollector) Collect(ch chan<- prometheus.Metric) {
	rc := c.counts()
	ch <- prometheus.MustNewConstMetric(c.received, prometheus.CounterValue, float64(rc.Received))
	ch <- prometheus.MustNewConstMetric(c.relayed, prometheus.CounterValue, float64(rc.Relayed), "user")
	ch <- prometheus.MustNewConstMetric(c.relayed, prometheus.CounterValue, float64(rc.RelayedKernel), "kernel")
	for reason, n := range rc.Dropped {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n), reason.String())
	}
	ch <- prometheus.MustNewConstMetric(c.rtcpDropped, prometheus.CounterValue, float64(rc.ForeignRTCP), media.DropForeignSource.String())
}

// isLoopbackListen reports whether a host:port listens on loopback only.
// An empty host, 0.0.0.0, :: or a name other than localhost listens
// elsewhere too.
func isLoopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errAdminNeedsToken is the refusal of an exposed admin API without a
// token.
var errAdminNeedsToken = errors.New("admin.listen: a non-loopback address needs admin.token")

// startAdmin serves the admin HTTP API (README "The same by HTTP") on admin.listen until
// stop is called, and returns the address it listens on: listenAdmin, then
// serve. An empty admin.listen disables it: stop does nothing and addr is
// "". calls lists the calls in progress, ready is the /readyz check, stats
// feed /metrics.
func startAdmin(ctx context.Context, c *config.Config, store *binding.Store, calls api.CallLister,
	ready func(context.Context) error, stats callStats, log *slog.Logger,
) (stop func(context.Context) error, addr string, err error) {
	return startAdminTimeouts(ctx, c, store, calls, ready, stats, log, defaultAdminTimeouts)
}

// startAdminTimeouts is startAdmin with the server's timeouts given.
func startAdminTimeouts(ctx context.Context, c *config.Config, store *binding.Store, calls api.CallLister,
	ready func(context.Context) error, stats callStats, log *slog.Logger, t adminTimeouts,
) (stop func(context.Context) error, addr string, err error) {
	a, err := listenAdmin(ctx, c, log)
	if err != nil {
		return nil, "", err
	}
	a.timeouts = t
	return a.serve(ctx, c, store, calls, ready, stats, log)
}

// adminListener is the admin API's socket, bound before the store is
// opened, with what the API needs from the configuration.
type adminListener struct {
	ln       net.Listener // nil when admin.listen is empty
	loc      *time.Location
	rates    binding.Rates
	timeouts adminTimeouts
	// protection is the platform's consignee protection the API applies:
	// the configuration's, or a running node's (which a reload changes).
	protection func() protection.Platform
	// checkWebhook checks a webhook's host when a merchant registers it;
	// nil checks it against events.allow_private as serve started.
	checkWebhook func(ctx context.Context, url string) error
}

// listenAdmin checks the admin API's configuration and binds admin.listen,
// without serving yet. A listen address other than loopback is refused
// without admin.token.
func listenAdmin(ctx context.Context, c *config.Config, log *slog.Logger) (*adminListener, error) {
	listen := strings.TrimSpace(c.Admin.Listen)
	if listen == "" {
		log.Info("admin API disabled (admin.listen is empty)")
		return &adminListener{}, nil
	}
	if c.Admin.Token == "" && !isLoopbackListen(listen) {
		return nil, errAdminNeedsToken
	}
	loc, err := time.LoadLocation(c.Billing.Timezone)
	if err != nil {
		return nil, fmt.Errorf("billing.timezone: %w", err)
	}
	rates, err := ratesOf(c)
	if err != nil {
		return nil, err
	}
	platform, err := c.Protection.Platform()
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	return &adminListener{ln: ln, loc: loc, rates: rates, timeouts: defaultAdminTimeouts,
		protection: func() protection.Platform { return platform }}, nil
}

// close unbinds an admin API that will not be served.
func (a *adminListener) close() {
	if a.ln != nil {
		if err := a.ln.Close(); err != nil {
			slog.Debug("closing admin listener", "error", err)
		}
	}
}

// serve serves the admin API on the bound listener until stop is called.
func (a *adminListener) serve(ctx context.Context, c *config.Config, store *binding.Store, calls api.CallLister,
	ready func(context.Context) error, stats callStats, log *slog.Logger,
) (stop func(context.Context) error, addr string, err error) {
	if a.ln == nil {
		return func(context.Context) error { return nil }, "", nil
	}
	metrics, err := newMetrics(stats)
	if err != nil {
		a.close()
		return nil, "", err
	}
	checkWebhook := a.checkWebhook
	if checkWebhook == nil {
		checkWebhook = func(ctx context.Context, url string) error {
			return events.CheckURL(ctx, url, c.Events.AllowPrivate, nil)
		}
	}
	handler := api.New(store, api.Options{
		Token: c.Admin.Token, Rates: a.rates, Currency: c.Billing.Currency, Location: a.loc,
		Calls: calls, Ready: ready, Metrics: metrics, Log: log, StreamIdle: a.timeouts.stream,
		Protection:   a.protection,
		CheckWebhook: checkWebhook,
		RecordingDir: c.Recording.Dir,
	})
	if c.Admin.PProf {
		handler = withPProf(handler, c.Admin.Token)
	}
	ln, t := a.ln, a.timeouts
	// A streamed response replaces the server's WriteTimeout by deadlines
	// of its own for each write (t.stream; binding/api/stream.go). The
	// read deadline (ReadTimeout) ends once the request has been read:
	// net/http lifts it when it starts watching for the client to hang up.
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Requests outlive the signal: on SIGTERM, Shutdown lets the ones
		// in flight finish instead of cancelling them.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if err != nil {
			log.Error("admin API stopped", "error", err)
		}
		served <- err
	}()
	stop = func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if err != nil {
			// In-flight requests did not finish in time: cut them.
			err = errors.Join(err, srv.Close())
		}
		return errors.Join(err, <-served)
	}
	return stop, ln.Addr().String(), nil
}
