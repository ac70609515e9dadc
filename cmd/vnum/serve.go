package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/events"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip"
	"github.com/vnum/vnum/spool"
)

func newServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the B2BUA, the media relay and the admin API until SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), cfg, slog.Default(), nil)
		},
	}
}

// errNoTrunk refuses to serve without an outbound trunk.
var errNoTrunk = errors.New("trunk.outbound: empty; serve needs the carrier's SIP URI, e.g. sip:203.0.113.10:5060;transport=udp")

// node is a running vnum: store, the node's lease, its spool, media
// ports and SIP server.
type node struct {
	store *binding.Store
	lease *binding.Lease
	spool *spool.Spool
	ports *media.Ports
	sip   *sip.Server
	// router is what signalling asks of the store; a reload puts the
	// protection.* it reads in force.
	router *router
	// stopLegs stops the BYEs still in flight in the legs of the calls
	// a crash cut (endLegs).
	stopLegs func()
	// storeMetrics times the router's store calls; storeTimeout
	// (store.timeout) bounds the pool's count at a scrape.
	storeMetrics *storeMetrics
	storeTimeout time.Duration
	// events delivers call events (serve starts it; nil in the demo).
	events *events.Dispatcher
	cfg    *config.Config
}

// startNode opens the store and starts signalling and media on cfg. A new,
// empty store is logged as a warning unless quietStore (the demo's
// temporary store).
func startNode(ctx context.Context, c *config.Config, log *slog.Logger, quietStore bool) (*node, error) {
	return startNodeWith(ctx, c, log, quietStore, nil)
}

// startNodeWith is startNode relaying media on ports (nil: the pairs of
// media.rtp_ports). Tests pass pairs of the kernel's choosing, so that
// packages testing in parallel never compete for one range.
func startNodeWith(ctx context.Context, c *config.Config, log *slog.Logger, quietStore bool, ports *media.Ports) (*node, error) {
	return startNodeAt(ctx, c, log, quietStore, ports, time.Now)
}

// startNodeAt is startNodeWith whose router reads the clock now: the
// bindings' lives and consignee protection's quiet hours and days. The
// demo and tests pass a clock they move.
func startNodeAt(ctx context.Context, c *config.Config, log *slog.Logger, quietStore bool, ports *media.Ports,
	now func() time.Time) (*node, error) {
	b, err := bindNode(c, log, ports)
	if err != nil {
		return nil, err
	}
	b.router.now = now
	return b.start(ctx, log, quietStore)
}

// boundNode is a node whose SIP sockets are bound and whose configuration
// has passed every check, but which has not opened the store yet.
type boundNode struct {
	c      *config.Config
	ports  *media.Ports
	sip    *sip.Server
	router *router
	spool  *spool.Spool
}

// bindNode does what can fail before the store is touched: it checks
// media.ip and the rates, opens the spool (store.spool) and binds
// sip.listen. A serve that fails here leaves the store as it was, not even
// created.
func bindNode(c *config.Config, log *slog.Logger, ports *media.Ports) (*boundNode, error) {
	if err := checkMediaIP(c.Media); err != nil {
		return nil, err
	}
	rates, err := ratesOf(c)
	if err != nil {
		return nil, err
	}
	if ports == nil {
		if ports, err = portsOf(c.Media); err != nil {
			return nil, err
		}
	}
	// Released pairs keep their sockets only within the descriptors set
	// aside for media: four a call of calls.max_active when it is set.
	ports.SetBoundLimit(2 * c.Calls.MaxActive)
	opts, err := sipOptions(c, ports, log)
	if err != nil {
		return nil, err
	}
	if err := prepareRecordings(c.Recording); err != nil {
		return nil, err
	}
	sp, err := openSpool(c)
	if err != nil {
		return nil, err
	}
	opts.Spool = sp
	fail := func(err error) (*boundNode, error) {
		return nil, errors.Join(err, sp.Close())
	}
	// The router gets its store once the store is open (start); nothing
	// is served before.
	platform, err := c.Protection.Platform()
	if err != nil {
		return fail(err)
	}
	rt := &router{rates: rates, now: time.Now, metrics: newStoreMetrics()}
	rt.setPlatform(platform)
	srv, err := sip.NewServer(opts, rt)
	if err != nil {
		return fail(err)
	}
	if err := srv.Listen(); err != nil {
		return fail(err)
	}
	return &boundNode{c: c, ports: ports, sip: srv, router: rt, spool: sp}, nil
}

// close unbinds a node that will not start.
func (b *boundNode) close() {
	b.sip.Close()
	if err := b.spool.Close(); err != nil {
		slog.Error("closing the spool", "error", err)
	}
}

// leaseStartTimeout bounds taking the node's lease, writing the ends its
// spool kept and closing its interrupted calls at start.
const leaseStartTimeout = 30 * time.Second

// start opens the store, takes the node's lease (writing the ends its
// spool kept, then closing the calls a crash of the node left open) and
// serves SIP, then hangs up in the background the legs those calls left
// up. On an error the sockets are closed and the store is left as the
// open and the refused lease left it: unchanged, unless it was new.
func (b *boundNode) start(ctx context.Context, log *slog.Logger, quietStore bool) (*node, error) {
	announce := func(dsn string) {
		log.Warn("created a new, empty store", "store.dsn", dsn)
	}
	if quietStore {
		announce = nil
	}
	store, err := openStore(ctx, b.c, announce)
	if err != nil {
		b.close()
		return nil, err
	}
	// Once the store is open the node starts even if SIGTERM came
	// meanwhile (it then drains at once), rather than stop half-way
	// through closing its interrupted calls.
	leaseCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseStartTimeout)
	lease, legs, err := takeLease(leaseCtx, store, nodeID(b.c), b.spool, b.router.rates, log)
	cancel()
	if err != nil {
		b.close()
		return nil, errors.Join(err, store.Close())
	}
	b.router.store = store
	// The server's own context is not the signal's: on SIGTERM it drains
	// first (Shutdown), then closes.
	b.sip.Serve(context.WithoutCancel(ctx))
	return &node{store: store, lease: lease, spool: b.spool, ports: b.ports, sip: b.sip, router: b.router,
		stopLegs: endLegs(b.sip, legs), storeMetrics: b.router.metrics, storeTimeout: b.c.Store.Timeout}, nil
}

// checkMediaIP binds a UDP socket on media.ip once: an address that is not this
// host's would otherwise let serve start and then refuse every call as
// "no free rtp ports".
func checkMediaIP(m config.Media) error {
	addr, err := m.Addr()
	if err != nil {
		return err
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		return fmt.Errorf("media.ip: cannot bind %s (want an address of this host): %w", m.IP, err)
	}
	return conn.Close()
}

// stats are the SIP server's and the media relay's counters /metrics
// reads.
func (n *node) stats() callStats {
	return callStats{active: n.sip.ActiveCalls, total: n.sip.CallsTotal, messagesRefused: n.sip.MessagesRefused,
		panics: n.sip.Panics, refused: n.sip.RefusedCalls, pendingCDRs: n.sip.PendingCDRs,
		queueDelay: n.sip.QueueDelay, relay: n.ports.RelayCounts, kpis: n.sip.Metrics(),
		trunkUp: n.sip.TrunkUp, legBFailures: n.sip.LegBFailures,
		protected: n.sip.ProtectedCalls,
		tcpOpen:   n.sip.TCPConnections, tcpLimit: n.sip.TCPConnectionLimit, tcpRefused: n.sip.TCPRefused,
		malformed: n.sip.MalformedMessages, overLimit: n.sip.OverLimit, recordings: n.sip.Recordings,
		store: n.storeMetrics, pool: newPoolCollector(n.store.PoolStats, n.storeTimeout), auth: n.sip.AuthFailures}
}

// stop drains the calls in progress (README "SIP behaviour in short") and closes the store.
func (n *node) stop(ctx context.Context) {
	n.sip.Shutdown(ctx)
	n.close()
}

// close releases the node's lease and closes the store and the spool; the
// SIP server must be shut down first, so that the calls the node had are
// finished.
func (n *node) close() {
	n.stopLegs()
	if n.events != nil {
		stopEvents(n.events, n.cfg)
	}
	if err := n.spool.Close(); err != nil {
		slog.Error("closing the spool", "error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), binding.LeaseRenewEvery)
	if err := n.lease.Release(ctx); err != nil {
		slog.Error("releasing the node's lease", "error", err)
	}
	cancel()
	if err := n.store.Close(); err != nil {
		slog.Error("closing store", "error", err)
	}
}

// serve runs a node until ctx ends (SIGTERM/SIGINT), then drains it.
// ready, when not nil, is called once the node listens. What can fail
// cheaply (the configuration, media.ip, binding sip.listen and
// admin.listen) is done before the store is opened: a serve that does not
// start changes nothing in the store.
func serve(ctx context.Context, c *config.Config, log *slog.Logger, ready func(*node)) error {
	if c.Trunk.Outbound == "" {
		// Every call would fail at leg B: refuse at once, not silently.
		return errNoTrunk
	}
	// SIGHUP re-reads the configuration; it never stops vnum (Go's
	// default for it is to exit), from the very start.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	b, err := bindNode(c, log, nil)
	if err != nil {
		return err
	}
	// media.kernel on without a kernel relay is refused before the store
	// is touched.
	stopKernel, announceKernel, err := openKernelRelay(c.Media, b.ports, log)
	if err != nil {
		b.close()
		return err
	}
	defer stopKernel() // after the drain: the calls' flows are gone
	admin, err := listenAdmin(ctx, c, log)
	if err != nil {
		b.close()
		return err
	}
	n, err := b.start(ctx, log, false)
	if err != nil {
		admin.close()
		return err
	}
	announceKernel()
	// The admin API reads the platform's protection the node has in
	// force, which a reload changes.
	admin.protection = n.router.platformNow
	n.events, n.cfg = startEvents(c, n.store, log), c
	admin.checkWebhook = n.events.CheckURL
	stats := n.stats()
	stats.events, stats.eventsPending = n.events.Counts, n.events.Pending
	stopAdmin, adminAddr, err := admin.serve(ctx, c, n.store, n.sip.Calls,
		func(ctx context.Context) error {
			if err := n.store.Ping(ctx); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			if err := n.sip.Serving(); err != nil {
				return err
			}
			if up, why := n.sip.TrunkUp(); !up {
				return fmt.Errorf("trunk down: %s", why)
			}
			return nil
		},
		stats, log)
	if err != nil {
		n.stop(context.Background())
		return err
	}
	log.Info("vnum serving", "version", versionLine(), "node", nodeID(c), "udp", n.sip.Addr("udp"), "tcp", n.sip.Addr("tcp"), "tls", n.sip.Addr("tls"),
		"media", c.Media.IP, "rtp_ports", c.Media.RTPPorts, "store", c.Store.Driver, "spool", n.spool.Path(), "admin", adminAddr)
	if ready != nil {
		ready(n)
	}
	stopSweep := startSweep(c.Recording, recordingSweepEvery, time.Now, log)
	defer stopSweep()
	// The lease is renewed until the node is closed, draining included.
	leaseCtx, stopLease := context.WithCancel(context.WithoutCancel(ctx))
	lost := make(chan error, 1)
	renewing := make(chan struct{})
	go func() {
		defer close(renewing)
		keepLease(leaseCtx, n.lease, log, lost)
	}()
	var lostErr error
	for running := c; ctx.Err() == nil && lostErr == nil; {
		select {
		case <-ctx.Done():
		case <-hup:
			log.Info("SIGHUP: re-reading the configuration", "file", configFile)
			running = reloadNode(configFile, running, n, log)
		case lostErr = <-lost:
			// Another process took the node over after this one failed
			// to renew its lease in time: its calls are that process's
			// now.
			log.Error("lost the node's lease; stopping", "error", lostErr)
		}
	}
	log.Info("draining", "calls", n.sip.ActiveCalls(), "drain_timeout", c.Calls.DrainTimeout.String())
	// The admin API stays up while calls drain: /readyz says unavailable,
	// /v1/calls shows what is left.
	n.sip.Shutdown(context.Background())
	adminCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := stopAdmin(adminCtx); err != nil {
		log.Error("stopping admin API", "error", err)
	}
	cancel()
	stopLease()
	<-renewing
	n.close()
	log.Info("stopped")
	return lostErr
}

// sipOptions maps the configuration onto what signalling takes.
func sipOptions(c *config.Config, ports *media.Ports, log *slog.Logger) (sip.Options, error) {
	cidrs, err := c.Trunk.InboundPrefixes()
	if err != nil {
		return sip.Options{}, err
	}
	return sip.Options{
		Listen:            c.SIP.Listen,
		PublicHost:        c.SIP.PublicHost,
		TLSCert:           c.SIP.TLSCert,
		TLSKey:            c.SIP.TLSKey,
		DigestAlgorithms:  c.SIP.DigestAlgorithms,
		AuthFailures:      c.Security.AuthFailures,
		BlockFor:          c.Security.BlockFor,
		Ports:             ports,
		MediaTimeout:      c.Media.Timeout,
		ExtensionDigits:   c.IVR.ExtensionDigits,
		FirstDigitTimeout: c.IVR.FirstDigitTimeout,
		InterDigitTimeout: c.IVR.InterDigitTimeout,
		Attempts:          c.IVR.Attempts,
		AnswerMode:        c.IVR.Answer,
		Language:          c.IVR.Language,
		TrunkOutbound:     c.Trunk.Outbound,
		TrunkKeepalive:    c.Trunk.Keepalive,
		TrunkUsername:     c.Trunk.Username,
		TrunkPassword:     c.Trunk.Password,
		InboundCIDRs:      cidrs,
		NumberFormat:      c.Trunk.NumberFormat,
		RingTimeout:       c.Calls.RingTimeout,
		MaxDuration:       c.Calls.MaxDuration,
		DrainTimeout:      c.Calls.DrainTimeout,
		StoreTimeout:      c.Store.Timeout,
		InvalidExtensions: c.Security.InvalidExtensions,
		MaxActive:         c.Calls.MaxActive,
		InviteRate:        c.Security.InviteRate,
		RecordingMode:     c.Recording.Mode,
		RecordingDir:      c.Recording.Dir,
		Logger:            log,
	}, nil
}

// portsOf is the RTP port allocator of media.rtp_ports on media.ip.
func portsOf(m config.Media) (*media.Ports, error) {
	lo, hi, err := m.PortRange()
	if err != nil {
		return nil, fmt.Errorf("media.rtp_ports: %w", err)
	}
	ports, err := media.NewPorts(m.IP, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	return ports, nil
}
