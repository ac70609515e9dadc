// Package sip is vnum's signalling: the SIP listeners, digest
// authentication, leg A (the caller and the IVR), leg B (the carrier trunk)
// and the call that joins them.
package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// udpReadBuffer is the SO_RCVBUF asked for SIP UDP sockets: the default
// overflows under load or in GC pauses (docs/sipgo.md §6).
const udpReadBuffer = 4 << 20

// allowed is the Allow header value: the methods vnum takes.
const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER"

// Options is the part of the configuration signalling needs; cmd/vnum
// fills it from config.Config.
type Options struct {
	// Listen holds transport URIs: udp://host:port, tcp://host:port, tls://host:port.
	Listen []string
	// PublicHost replaces the listen host in Contact and Via when set.
	PublicHost string
	// TLSCert and TLSKey enable the tls:// listen entries.
	TLSCert, TLSKey string
	// DigestAlgorithms are offered in this order (MD5, SHA-256).
	DigestAlgorithms []string
	// AuthFailures within a minute block a source for BlockFor.
	AuthFailures int
	BlockFor     time.Duration

	// Ports allocates the relay's RTP ports.
	Ports *media.Ports
	// MediaTimeout ends a call when a leg sends no RTP for this long.
	MediaTimeout time.Duration

	ExtensionDigits   int
	FirstDigitTimeout time.Duration
	InterDigitTimeout time.Duration
	Attempts          int
	// AnswerMode is "answer" or "early" (collect digits in 183 early media).
	AnswerMode string
	// Language selects the prompt set (zh, en).
	Language string

	// TrunkOutbound is the carrier's SIP URI, e.g. sip:203.0.113.10:5060;transport=udp.
	TrunkOutbound string
	// TrunkKeepalive is how often an OPTIONS goes to TrunkOutbound;
	// trunkMissesDown unanswered in a row count the trunk down. Zero
	// sends none.
	TrunkKeepalive time.Duration
	TrunkUsername  string
	TrunkPassword  string
	// InboundCIDRs are the trunk's source networks: their INVITEs are PSTN calls.
	InboundCIDRs []netip.Prefix
	// NumberFormat is "national" or "e164" for B in leg B's Request-URI.
	NumberFormat string

	RingTimeout  time.Duration
	MaxDuration  time.Duration
	DrainTimeout time.Duration
	// StoreTimeout bounds each store read or write (store.timeout, vnum.example.yaml):
	// a store slower than that gets a new call 503 at once; zero means 2 s.
	StoreTimeout time.Duration
	// Spool keeps the CDR ends the store would not take across a restart
	// (nil: they wait in memory only, lost if the process stops first).
	Spool Spool
	// CDRRefresh is how often an answered call's CDR row is refreshed
	// (README "CDRs and billing": at least every 10 s); zero means DefaultCDRRefresh.
	CDRRefresh time.Duration

	// InvalidExtensions is security.invalid_extensions: wrong extensions a
	// caller may key in an hour before its calls are refused (0: no limit).
	InvalidExtensions int
	// Now is the clock of that hour and of security.invite_rate; nil means
	// time.Now (tests pass theirs).
	Now func() time.Time

	// MaxActive is calls.max_active: calls admitted (in progress or being
	// set up) before new ones get 503; 0 means no limit but the RTP ports.
	MaxActive int
	// InviteRate is security.invite_rate: new INVITEs per second from one
	// source outside InboundCIDRs before the excess gets 503; 0 means no
	// limit.
	InviteRate int
	// MaxSetup bounds the new INVITEs being set up at once (credentials,
	// store lookups, the CDR's first write) before new ones get 503 as the
	// process saturates; zero means frontdoor.DefaultMaxSetup.
	MaxSetup int
	// MaxQueueDelay is how long each of the SIP datagrams read last may
	// have waited in its UDP socket before new INVITEs get 503 as the
	// process saturates; zero means frontdoor.DefaultMaxQueueDelay, negative turns
	// the check off.
	MaxQueueDelay time.Duration

	// TCPPerSource caps the TCP and TLS connections one source address
	// (an IPv6 /64) holds open; zero means frontdoor.DefaultTCPPerSource. The
	// trunk's sources (InboundCIDRs) are not capped by it.
	TCPPerSource int
	// TCPMaxConns caps all TCP and TLS connections; zero derives the cap
	// from the process's descriptor limit, after what media needs (the
	// budget logged at Listen).
	TCPMaxConns int
	// TCPIdle is how long a connection may go without a message or
	// keepalive unless a registration or a call rides on it; zero means
	// frontdoor.DefaultTCPIdle.
	TCPIdle time.Duration
	// TCPMessageTimeout bounds a message's arrival once begun, a new
	// connection's first message and each write to a peer; zero means
	// frontdoor.DefaultTCPMessageTimeout.
	TCPMessageTimeout time.Duration

	// Resolver looks up the one name vnum resolves: trunk.outbound's host,
	// operator configuration. Nil is the system's resolver. No name taken
	// from a message (Via, Contact, Record-Route) is ever looked up.
	Resolver *net.Resolver

	Logger *slog.Logger
}

// withDefaults is o with each zero that stands for a default replaced by
// that default, config's named one where the key is configuration's, so
// that nothing else in sip restates a default.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Attempts <= 0 {
		o.Attempts = config.DefaultIVRAttempts
	}
	if o.ExtensionDigits <= 0 {
		o.ExtensionDigits = config.DefaultExtensionDigits
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = config.DefaultMaxDuration
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = config.DefaultDrainTimeout
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = config.DefaultStoreTimeout
	}
	if o.CDRRefresh <= 0 {
		o.CDRRefresh = DefaultCDRRefresh
	}
	return o
}

// door is the front door's part of o: trunk tells the trunk's sources,
// parser reads the INVITEs the door answers at the socket.
func (o Options) door(trunk func(netip.Addr) bool, parser *sip.Parser) frontdoor.Options {
	return frontdoor.Options{
		MaxActive: o.MaxActive, MaxSetup: o.MaxSetup, MaxQueueDelay: o.MaxQueueDelay,
		InviteRate: o.InviteRate, DrainTimeout: o.DrainTimeout, Ports: o.Ports,
		Trunk: trunk, Parser: parser, Now: o.Now, Log: o.Logger,
	}
}

// Server is the B2BUA: it owns the SIP user agent, its listeners and the
// calls in progress.
type Server struct {
	opts   Options
	router Router
	log    *slog.Logger
	auth   *authenticator

	ua          *sipgo.UserAgent
	srv         *sipgo.Server
	client      *sipgo.Client
	dialog      *sipgo.DialogUA            // leg B
	byTransport map[string]*sipgo.DialogUA // leg A: Contact on the transport the caller used

	listeners []listener
	host      string
	port      int
	transport string

	// trunk is the carrier trunk as configured now: a reload swaps it.
	trunk atomic.Pointer[trunkConf]

	trunkMu      sync.Mutex
	trunkAddr    string    // trunk.outbound's host resolved, IP:port
	trunkAddrFor string    // the host trunkAddr is for
	trunkAt      time.Time // when trunkAddr was looked up

	live *registry // the calls in progress
	// backlog writes the CDR ends the store refused once it is back.
	backlog *cdrBacklog
	walks   *walkLimit // security.invalid_extensions
	// door decides which new calls come in, and how a refusal is answered.
	door   *frontdoor.Door
	parser *sip.Parser // for the messages refuseAtRead answers

	trunkHealth *trunkWatch // the outbound trunk's keepalives
	serveCtx    context.Context
	keepMu      sync.Mutex
	stopKeep    context.CancelFunc // the keepalives' goroutine
	legBFailed  legBFailureCounts  // leg B's failures by status

	// hostile counts and reports malformed messages and messages over
	// vnum's limits (malformed.go, limits.go).
	hostile *hostileInput

	messagesRefused atomic.Int64
	callsTotal      atomic.Int64
	panics          atomic.Int64

	// tcp guards the TCP and TLS listeners and their connections.
	tcp *frontdoor.TCPGuard
	// closing is set by Close: a listener that stops then was stopped;
	// one that stops before has failed, and is named in down.
	closing atomic.Bool
	downMu  sync.Mutex
	down    []string
}

type listener struct {
	network string
	addr    net.Addr
	closer  interface{ Close() error }
}

// NewServer builds a server; Listen binds its listeners, Serve serves
// them (Start does both).
func NewServer(opts Options, router Router) (*Server, error) {
	if opts.Ports == nil {
		return nil, errors.New("sip: Options.Ports is required")
	}
	opts = opts.withDefaults()
	auth, err := newAuthenticator(router, opts.DigestAlgorithms, opts.AuthFailures, opts.BlockFor)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:   opts,
		router: router,
		log:    opts.Logger,
		auth:   auth,
		live:   newRegistry(),
		walks:  newWalkLimit(opts.InvalidExtensions, opts.Now),

		trunkHealth: newTrunkWatch(),
		parser:      lwsTolerantParser(),
		hostile:     newHostileInput(opts.Logger, opts.Now),
	}
	s.door = frontdoor.New(opts.door(s.trunkSource, s.parser))
	s.backlog = newCDRBacklog(router.EndCall, s.storeCtx, opts.Spool, s.log)
	s.tcp = frontdoor.NewTCPGuard(frontdoor.TCPOptions{PerSource: opts.TCPPerSource, Idle: opts.TCPIdle,
		MessageTimeout: opts.TCPMessageTimeout}, s.trunkSource, s.log)
	tc, err := newTrunkConf(opts.reloadable())
	if err != nil {
		return nil, err
	}
	s.trunk.Store(tc)
	return s, nil
}

// Start binds every listen URI and serves SIP until ctx ends or Close:
// Listen, then Serve.
func (s *Server) Start(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.Serve(ctx)
	return nil
}

// Listen binds every listen URI and makes the user agent, without serving
// yet: a caller binds first what can fail at once (an address in use, a
// TLS certificate that does not load) before it writes anything anywhere,
// then calls Serve. Requests that arrive in between wait in the sockets.
// On an error nothing stays bound.
func (s *Server) Listen() error {
	var err error
	// sipgo's records of malformed messages are counted and reported
	// per source, without their payload (malformed.go).
	sipLog := slog.New(sipgoRecords{Handler: numberMasker{s.log.Handler()}, h: s.hostile}).With("component", "sip")
	s.ua, err = sipgo.NewUA(sipgo.WithUserAgent("vnum"),
		sipgo.WithUserAgentParser(lwsTolerantParser()),
		// sipgo resolves names it finds in messages: the Via sent-by of a
		// request whose TCP connection is gone (A and AAAA, then SRV;
		// docs/sipgo.md §12), Contact and Record-Route hosts of in-dialog
		// requests. Remote input must not make vnum query DNS, so sipgo
		// gets a resolver that refuses every lookup; the trunk's name is
		// resolved by vnum itself (trunkDest).
		sipgo.WithUserAgentDNSResolver(noDNS),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipLog),
			// A response that matches no transaction (a retransmission
			// after the transaction ended) is no news for the operator:
			// sipgo's default logs it at info on the default logger.
			sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) {
				sipLog.Debug("response matches no transaction", "response", r.Short())
			})),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog),
			sip.WithTransportLayerReadFilter(s.hostile.marks.filter)))
	if err != nil {
		return err
	}
	s.ua.TransportLayer().OnMessage(s.hostile.checkMessage)
	s.srv, err = sipgo.NewServer(s.ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		s.Close()
		return err
	}
	for _, l := range s.opts.Listen {
		if err := s.listen(l); err != nil {
			s.Close()
			return err
		}
	}
	if len(s.listeners) == 0 {
		s.Close()
		return errors.New("sip.listen: no listener")
	}
	// The descriptor budget caps the connections; Serve logs it.
	s.tcp.Budget(s.opts.Ports.Pairs(), s.opts.MaxActive, s.opts.TCPMaxConns)
	first := s.listeners[0]
	ap, err := netip.ParseAddrPort(first.addr.String())
	if err != nil {
		s.Close()
		return err
	}
	s.host, s.port, s.transport = ap.Addr().String(), int(ap.Port()), first.network
	if s.opts.PublicHost != "" {
		s.host = s.opts.PublicHost
	}
	if err := s.newClient(sipLog); err != nil {
		s.Close()
		return err
	}
	s.routes()
	return nil
}

// Serve serves SIP on the listeners Listen bound until ctx ends or Close.
func (s *Server) Serve(ctx context.Context) {
	s.tcp.LogBudget()
	s.serve()
	for _, l := range s.listeners {
		if l.network == "udp" {
			waitServing(s.ua, l.addr.String())
		}
	}
	// trunk.outbound's host is looked up now, so that the first call does
	// not wait for DNS.
	go s.trunkDest()
	s.serveCtx = ctx
	s.restartKeepalive()
	go func() {
		<-ctx.Done()
		s.Close()
	}()
}

// newClient makes the client vnum sends requests with, and the dialog
// agents of leg A (one per transport) and of leg B.
func (s *Server) newClient(sipLog *slog.Logger) error {
	copts := []sipgo.ClientOption{sipgo.WithClientHostname(s.host), sipgo.WithClientLogger(sipLog)}
	for _, l := range s.listeners {
		if l.network == "udp" {
			// Send from the listening socket, not a fresh port per
			// destination (docs/sipgo.md §5).
			copts = append(copts, sipgo.WithClientConnectionAddr(l.addr.String()))
			break
		}
	}
	var err error
	s.client, err = sipgo.NewClient(s.ua, copts...)
	if err != nil {
		return err
	}
	s.byTransport = make(map[string]*sipgo.DialogUA)
	for _, l := range s.listeners {
		if _, ok := s.byTransport[l.network]; !ok {
			// In-dialog requests to a caller go where its INVITE came from,
			// not to a Contact behind NAT.
			s.byTransport[l.network] = &sipgo.DialogUA{Client: s.client, ContactHDR: s.contactFor(l), RewriteContact: true}
		}
	}
	// In-dialog requests to leg B (ACK, BYE, re-INVITE) go where its 2xx
	// came from: vnum resolves no name a message gives (Contact), and a
	// carrier or phone behind NAT is reached where it really is.
	s.dialog = &sipgo.DialogUA{Client: s.client, ContactHDR: s.contactFor(s.listeners[0]), RewriteContact: true}
	return nil
}

// routes hands each method to its handler.
func (s *Server) routes() {
	// Every handler goes through guard: the checks of version and CSeq
	// that sipgo leaves to the application, and a recover, so that one bad
	// message ends only its own request or call (docs/sipgo.md §14).
	s.srv.OnInvite(s.guard(s.onInvite))
	s.srv.OnAck(s.guard(s.onAck))
	s.srv.OnBye(s.guard(s.onBye))
	s.srv.OnCancel(s.guard(s.onCancel))
	s.srv.OnOptions(s.guard(s.onOptions))
	s.srv.OnMessage(s.guard(s.onMessage))
	s.srv.OnInfo(s.guard(s.onInfo))
	s.srv.OnUpdate(s.guard(s.onReoffer))
	s.srv.OnRegister(s.guard(s.onRegister))
	s.srv.OnNoRoute(s.guard(s.onNoRoute))
}

// serve serves SIP on every listener.
func (s *Server) serve() {
	for _, l := range s.listeners {
		l := l
		go func() {
			var err error
			switch ln := l.closer.(type) {
			case net.PacketConn:
				err = s.srv.ServeUDP(ln)
			case net.Listener:
				if l.network == "tls" {
					err = s.srv.ServeTLS(ln)
				} else {
					err = s.srv.ServeTCP(ln)
				}
			}
			if s.closing.Load() {
				s.log.Debug("sip listener closed", "network", l.network, "error", err)
				return
			}
			// Nothing but Close should end a listener: the TCP ones wait
			// out errors that pass (guardedListener). One that ends anyway
			// takes the node out of service until it restarts.
			what := fmt.Sprintf("%s listener %s stopped", l.network, l.addr)
			if err != nil {
				what += ": " + err.Error()
			}
			s.log.Error("sip listener stopped; the node is not ready until it restarts", "network", l.network,
				"addr", l.addr.String(), "error", err)
			s.downMu.Lock()
			s.down = append(s.down, what)
			s.downMu.Unlock()
		}()
	}
}

// waitServing waits (briefly) until sipgo has taken a UDP listener into its
// connection pool, so requests sent from it reuse the listening socket
// instead of trying to bind its address again.
func waitServing(ua *sipgo.UserAgent, addr string) {
	for i := 0; i < 200; i++ {
		if c, err := ua.TransportLayer().GetConnection("udp", addr); err == nil && c != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *Server) listen(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("sip.listen %q: want udp://host:port, tcp://host:port or tls://host:port", raw)
	}
	switch u.Scheme {
	case "udp":
		addr, err := net.ResolveUDPAddr("udp", u.Host)
		if err != nil {
			return fmt.Errorf("sip.listen %q: %w", raw, err)
		}
		conn, err := net.ListenUDP("udp", addr)
		if err != nil {
			return fmt.Errorf("sip.listen %q: %w", raw, err)
		}
		if err := conn.SetReadBuffer(udpReadBuffer); err != nil {
			s.log.Warn("cannot enlarge SIP UDP receive buffer", "error", err)
		}
		// Before anything parses it: a datagram over vnum's limits on
		// header fields is refused at the socket, whatever the load
		// (limits.go).
		pc, err := s.door.WrapUDP(conn, func(data []byte, from *net.UDPAddr) bool { return s.refuseAtRead(conn, data, from) })
		if err != nil {
			s.log.Warn("no receive stamps on the SIP UDP socket: saturation is seen later", "error", err)
		}
		s.listeners = append(s.listeners, listener{"udp", conn.LocalAddr(), pc})
	case "tcp":
		ln, err := net.Listen("tcp", u.Host)
		if err != nil {
			return fmt.Errorf("sip.listen %q: %w", raw, err)
		}
		s.listeners = append(s.listeners, listener{"tcp", ln.Addr(), s.tcp.Listener(ln, "tcp")})
	case "tls":
		if s.opts.TLSCert == "" || s.opts.TLSKey == "" {
			return nil // tls entries listen only where a certificate is configured
		}
		cert, err := tls.LoadX509KeyPair(s.opts.TLSCert, s.opts.TLSKey)
		if err != nil {
			return fmt.Errorf("sip.tls_cert: %w", err)
		}
		ln, err := tls.Listen("tcp", u.Host, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			return fmt.Errorf("sip.listen %q: %w", raw, err)
		}
		s.listeners = append(s.listeners, listener{"tls", ln.Addr(), s.tcp.Listener(ln, "tls")})
	default:
		return fmt.Errorf("sip.listen %q: unknown transport %q", raw, u.Scheme)
	}
	return nil
}

// Addr returns the bound address of the first listener of a network
// ("udp", "tcp", "tls"), or "" when there is none.
func (s *Server) Addr(network string) string {
	for _, l := range s.listeners {
		if l.network == network {
			return l.addr.String()
		}
	}
	return ""
}

// Listening reports whether the server has live listeners and takes
// calls (Serving says why not).
func (s *Server) Listening() bool { return s.Serving() == nil }

// Serving is the server's part of /readyz: nil while every listener
// serves and calls are taken; otherwise why not (draining, or which
// listener stopped and why).
func (s *Server) Serving() error {
	if len(s.listeners) == 0 {
		return errors.New("sip: not listening")
	}
	s.downMu.Lock()
	down := strings.Join(s.down, "; ")
	s.downMu.Unlock()
	if down != "" {
		return errors.New("sip: " + down)
	}
	if s.door.Draining() {
		return errors.New("sip: draining")
	}
	return nil
}

// contactFor is vnum's Contact on one listener: requests in the dialog
// come back on the transport and port the dialog started on.
func (s *Server) contactFor(l listener) sip.ContactHeader {
	host, port := s.host, s.port
	if ap, err := netip.ParseAddrPort(l.addr.String()); err == nil {
		port = int(ap.Port())
		if s.opts.PublicHost == "" {
			host = ap.Addr().String()
		}
	}
	uri := sip.Uri{Scheme: "sip", User: "vnum", Host: host, Port: port}
	if l.network != "udp" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", l.network)
	}
	return sip.ContactHeader{Address: uri}
}

// sdpAddr is the address vnum's SDP advertises for a media socket: the
// relay's own (media.ip), or sip.public_host when that is an IP address
// (vnum.example.yaml: the host put in Contact, Via and SDP behind NAT).
func (s *Server) sdpAddr(sock *media.Socket) netip.Addr {
	if ip, err := netip.ParseAddr(s.opts.PublicHost); err == nil {
		return ip
	}
	return sock.IP
}

// dialogFor is the dialog agent for a leg A request's transport.
func (s *Server) dialogFor(req *sip.Request) *sipgo.DialogUA {
	if d, ok := s.byTransport[strings.ToLower(req.Transport())]; ok {
		return d
	}
	return s.dialog
}

// Close stops the listeners and the user agent; calls in progress are not
// drained (see Shutdown).
func (s *Server) Close() {
	s.closing.Store(true)
	s.stopKeepalive()
	for _, l := range s.listeners {
		if err := l.closer.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("closing listener", "error", err)
		}
	}
	if s.ua != nil {
		if err := s.ua.Close(); err != nil {
			s.log.Debug("closing user agent", "error", err)
		}
	}
}

// Shutdown stops taking calls (503 with Retry-After), lets the calls in
// progress go on for up to DrainTimeout, then hangs them up and waits for
// their records to be finished (README "SIP behaviour in short").
func (s *Server) Shutdown(ctx context.Context) {
	s.door.Drain()
	s.live.drain()
	done := s.live.done()
	t := time.NewTimer(s.opts.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.hangupAll(reasonShutdown)
	case <-ctx.Done():
		s.hangupAll(reasonShutdown)
	}
	<-done
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cdrBacklogFlush)
	s.backlog.flush(flushCtx)
	cancel()
	s.Close()
}

// cdrBacklogFlush is how long Shutdown gives the CDR backlog to be written.
const cdrBacklogFlush = 10 * time.Second

// PendingCDRs is how many finished calls' records wait for the store.
func (s *Server) PendingCDRs() int { return s.backlog.Len() }

func (s *Server) hangupAll(r endReason) {
	for _, c := range s.live.all() {
		c.hangup(r)
	}
}

// CallInfo describes a call in progress for /v1/calls; it carries no
// consignee number and no caller address.
type CallInfo struct {
	ID        string    `json:"id"`
	Merchant  string    `json:"merchant,omitempty"`
	Binding   string    `json:"binding,omitempty"`
	Host      string    `json:"host"`
	Extension string    `json:"extension,omitempty"`
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at"`
}

// Calls lists the calls in progress.
func (s *Server) Calls() []CallInfo {
	calls := s.live.all()
	out := make([]CallInfo, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.info())
	}
	return out
}

// ActiveCalls returns the number of calls in progress.
func (s *Server) ActiveCalls() int {
	return s.live.count()
}

// MessagesRefused counts MESSAGE requests refused (virtual numbers carry no SMS).
func (s *Server) MessagesRefused() int64 { return s.messagesRefused.Load() }

// CallsTotal counts INVITEs that became calls.
func (s *Server) CallsTotal() int64 { return s.callsTotal.Load() }

// RefusedCalls returns the new INVITEs refused because vnum could not
// take one more call well, by reason (max_active, rtp_ports, invite_rate,
// saturated, store_slow, draining), for vnum_calls_refused_total. Every
// reason is present, zero or not.
func (s *Server) RefusedCalls() map[string]int64 { return s.door.Refused() }

// QueueDelay returns how long the SIP datagrams vnum read last had waited
// in its sockets, the least of the last few (vnum_sip_queue_delay_seconds).
func (s *Server) QueueDelay() time.Duration { return s.door.QueueDelay() }

// TCPConnections is how many TCP and TLS connections are open.
func (s *Server) TCPConnections() int { return s.tcp.Conns() }

// TCPConnectionLimit is the cap on open TCP and TLS connections.
func (s *Server) TCPConnectionLimit() int { return s.tcp.Limit() }

// TCPRefused counts the TCP and TLS connections refused at their accept
// (per_source, total) or closed by vnum (idle, slow, stalled), by reason.
func (s *Server) TCPRefused() map[string]int64 { return s.tcp.Refused() }

// Panics counts panics recovered in request handling and in the goroutines
// of calls; each ended only its own request or call.
func (s *Server) Panics() int64 { return s.panics.Load() }

func (s *Server) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond failed", "status", code, "error", err)
	}
}

// sourceHost is the IP a request came from, for CIDR checks and blocking.
func sourceHost(req *sip.Request) string {
	src := req.Source()
	if h, _, err := net.SplitHostPort(src); err == nil {
		return h
	}
	return src
}

func (s *Server) fromTrunk(req *sip.Request) bool {
	ip, err := netip.ParseAddr(sourceHost(req))
	if err != nil {
		return false
	}
	return s.trunkSource(ip)
}

// trunkSource reports whether ip is in trunk.inbound_cidrs as configured
// now.
func (s *Server) trunkSource(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s.trunk.Load().inbound {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// authorize admits a request from the trunk (when trunkOK), or with valid
// digest credentials. It answers the request itself (challenge or 403) and
// returns ok=false when the request is not admitted.
func (s *Server) authorize(req *sip.Request, tx sip.ServerTransaction, proxy, trunkOK bool) (Account, bool, bool) {
	src := sourceHost(req)
	trunk := s.fromTrunk(req)
	if trunkOK && trunk {
		return Account{}, true, true
	}
	// The trunk's addresses are never blocked: a forged source address must
	// not be able to cut the carrier off.
	if !trunk && s.auth.isBlocked(src) {
		s.refuse(req, tx, ErrBlocked)
		return Account{}, false, false
	}
	authHdr, chalHdr, code, reason := "Authorization", "WWW-Authenticate", 401, "Unauthorized"
	if proxy {
		authHdr, chalHdr, code, reason = "Proxy-Authorization", "Proxy-Authenticate", 407, "Proxy Authentication Required"
	}
	val := ""
	if h := req.GetHeader(authHdr); h != nil {
		val = h.Value()
	}
	ctx, cancel := s.storeCtx(context.Background())
	acct, err := s.auth.verify(ctx, string(req.Method), req.Recipient, val)
	cancel()
	switch {
	case err == nil:
		return acct, false, true
	case errors.Is(err, ErrNoCredentials), errors.Is(err, ErrStaleNonce), errors.Is(err, ErrReplay):
		// A replayed nonce-count gets a fresh nonce, not a strike: phones
		// that reuse a nonce must not lock out a whole office behind NAT.
		chals, cerr := s.auth.challenges(!errors.Is(err, ErrNoCredentials))
		if cerr != nil {
			s.respond(req, tx, 500, "Server Internal Error")
			return Account{}, false, false
		}
		hdrs := make([]sip.Header, 0, len(chals))
		for _, c := range chals {
			hdrs = append(hdrs, sip.NewHeader(chalHdr, c))
		}
		s.respond(req, tx, code, reason, hdrs...)
	case errors.Is(err, ErrBadRequest):
		s.log.Info("credentials refused", "source", src, "method", string(req.Method), "error", err)
		s.refuse(req, tx, err, sip.NewHeader("Warning", `399 vnum "digest uri differs from the Request-URI"`))
	case errors.Is(err, ErrBadCredentials):
		blocked := !trunk && s.auth.fail(src)
		s.log.Info("authentication failed", "source", src, "user", digestUser(val), "method", string(req.Method), "error", err, "blocked", blocked)
		s.refuse(req, tx, err)
	default:
		s.refuseStoreError(req, tx, "authentication lookup failed", err)
	}
	return Account{}, false, false
}

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if s.auth.isBlocked(sourceHost(req)) {
		s.respond(req, tx, 403, "Forbidden")
		return
	}
	s.respond(req, tx, 200, "OK", sip.NewHeader("Allow", allowed), sip.NewHeader("Accept", "application/sdp"))
}

// onMessage refuses SMS: virtual numbers carry none (README "SIP behaviour in short").
func (s *Server) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	if _, _, ok := s.authorize(req, tx, true, true); !ok {
		return
	}
	s.messagesRefused.Add(1)
	s.log.Info("message refused", "reason", "no sms on virtual numbers")
	s.respond(req, tx, 405, "Method Not Allowed",
		sip.NewHeader("Allow", allowed),
		sip.NewHeader("Warning", `399 vnum "Virtual numbers carry no SMS"`))
}

func (s *Server) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	s.respond(req, tx, 405, "Method Not Allowed", sip.NewHeader("Allow", allowed))
}

func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	// Matched CANCELs are answered inside sipgo; this one matched nothing.
	s.respond(req, tx, 481, "Call/Transaction Does Not Exist")
}
