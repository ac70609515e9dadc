// Package sip is vnum's signalling: the SIP listeners, digest
// authentication, leg A (the caller and the IVR), leg B (the carrier trunk)
// and the call that joins them.
package sip

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

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
	// AnswerMode is ivr.answer: answer the caller before the IVR, or
	// collect digits in 183 early media.
	AnswerMode config.AnswerMode
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
	// NumberFormat is trunk.number_format: how B is written in leg B's
	// Request-URI.
	NumberFormat config.NumberFormat

	RingTimeout  time.Duration
	MaxDuration  time.Duration
	DrainTimeout time.Duration
	// StoreTimeout bounds each store read or write (store.timeout): a
	// store slower than that gets a new call 503 at once; zero means
	// config.DefaultStoreTimeout.
	StoreTimeout time.Duration
	// Spool keeps the CDR ends the store would not take across a restart
	// (nil: they wait in memory only, lost if the process stops first).
	Spool Spool
	// CDRRefresh is how often an answered call's CDR row is refreshed;
	// zero means DefaultCDRRefresh.
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

	// RecordingMode is recording.mode: which bridged calls are recorded
	// (off, on, merchant); "" records none. RecordingDir is
	// recording.dir, the folder of their files, which must exist.
	RecordingMode config.RecordingMode
	RecordingDir  string

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
// calls in progress. Its request handlers are in handlers.go, its
// listeners in listeners.go; each call runs on its own (call.go).
type Server struct {
	opts   Options
	router Router
	log    *slog.Logger
	auth   *authenticator
	store  storeTimeout

	ua          *sipgo.UserAgent
	srv         *sipgo.Server
	client      *sipgo.Client
	dialog      *sipgo.DialogUA            // leg B
	byTransport map[string]*sipgo.DialogUA // leg A: Contact on the transport the caller used

	listeners []listener
	host      string
	port      int
	transport string

	// door decides which new calls come in, and how a refusal is answered;
	// tcp guards the TCP and TLS listeners and their connections.
	door *frontdoor.Door
	tcp  *frontdoor.TCPGuard
	// guard stands before every request handler; hostile counts and
	// reports malformed messages and messages over vnum's limits.
	guard   *requestGuard
	hostile *hostileInput

	trunk *trunk     // the carrier trunk: a reload swaps its configuration
	reg   *registrar // where accounts' softphones registered
	live  *registry  // the calls in progress
	// deps is what the calls get (callDeps), once the listeners are bound.
	deps *callDeps
	// backlog writes the CDR ends the store refused once it is back.
	backlog *cdrBacklog
	walks   *walkLimit // security.invalid_extensions

	legBFailures    legBFailureCounts
	protected       protectedCounts
	recordings      recordings
	panics          panicCounter
	messagesRefused atomic.Int64
	callsTotal      atomic.Int64
	kpi             *kpis

	// closing is set by Close: a listener that stops then was stopped;
	// one that stops before has failed, and is named in down.
	closing atomic.Bool
	downMu  sync.Mutex
	down    []string
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
	tr, err := newTrunk(opts.reloadable(), opts.Resolver, opts.Logger)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:    opts,
		router:  router,
		log:     opts.Logger,
		auth:    auth,
		store:   storeTimeout(opts.StoreTimeout),
		trunk:   tr,
		live:    newRegistry(),
		walks:   newWalkLimit(opts.InvalidExtensions, opts.Now),
		hostile: newHostileInput(opts.Logger, opts.Now, lwsTolerantParser()),
		kpi:     newKPIs(),
	}
	s.recordings.mode, s.recordings.dir = opts.RecordingMode, opts.RecordingDir
	s.panics.log = s.log
	s.door = frontdoor.New(opts.door(tr.source, lwsTolerantParser()))
	s.tcp = frontdoor.NewTCPGuard(frontdoor.TCPOptions{PerSource: opts.TCPPerSource, Idle: opts.TCPIdle,
		MessageTimeout: opts.TCPMessageTimeout}, tr.source, s.log)
	s.guard = &requestGuard{hostile: s.hostile, panics: &s.panics, log: s.log}
	s.reg = &registrar{store: router, timeout: s.store, now: opts.Now, tcp: s.tcp, log: s.log}
	s.backlog = newCDRBacklog(router.EndCall, s.store.ctx, opts.Spool, s.log)
	return s, nil
}

// callDeps is what the server's calls get: built once the listeners are
// bound (the SIP host and the dialog agents are known then).
func (s *Server) callDeps() *callDeps {
	o := s.opts
	var sdpIP netip.Addr
	if ip, err := netip.ParseAddr(o.PublicHost); err == nil {
		sdpIP = ip
	}
	return &callDeps{
		opts: callOptions{host: s.host, sdpIP: sdpIP, answerMode: o.AnswerMode, language: o.Language,
			extensionDigits: o.ExtensionDigits, attempts: o.Attempts, firstDigitTimeout: o.FirstDigitTimeout,
			interDigitTimeout: o.InterDigitTimeout, ringTimeout: o.RingTimeout, mediaTimeout: o.MediaTimeout,
			maxDuration: o.MaxDuration, cdrRefresh: o.CDRRefresh, storeTimeout: s.store},
		directory:    s.router,
		recorder:     s.router,
		protector:    protectorOf(s.router),
		media:        mediaPool{o.Ports},
		legB:         legBAgent{ua: s.dialog, live: s.live},
		routes:       routes{trunk: s.trunk, reg: s.reg},
		refusals:     s.door,
		walks:        s.walks,
		backlog:      s.backlog,
		recordings:   &s.recordings,
		recordChoice: recordingChoiceOf(s.router),
		legBFailures: &s.legBFailures,
		protected:    &s.protected,
		panics:       &s.panics,
		kpi:          s.kpi,
		log:          s.log,
	}
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

// Reload applies r to the running server; on an error nothing changes.
// Counts kept so far (failed logins, INVITE rates, wrong extensions) go
// on under the new limits. A new trunk starts its keepalives afresh.
func (s *Server) Reload(r Reloadable) error {
	if _, err := newTrunkConf(r); err != nil {
		return err
	}
	s.auth.setLimits(r.AuthFailures, r.BlockFor)
	s.door.SetInviteRate(r.InviteRate)
	s.walks.setLimit(r.InvalidExtensions)
	return s.trunk.reload(r)
}

// Close stops the listeners and the user agent; calls in progress are not
// drained (see Shutdown).
func (s *Server) Close() {
	s.closing.Store(true)
	s.trunk.stopKeepalive()
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
// their records to be finished.
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

func (s *Server) hangupAll(r endReason) {
	for _, c := range s.live.all() {
		c.hangup(r)
	}
}

// EndLegs sends a BYE in each dialog the store kept for the calls a crash
// of this node cut (by the call's id; see Legs), from the listening
// socket, and waits for the answers until ctx ends. Call it once the
// server serves (Serve), so that the answers are read. The log says how
// many legs were ended; a leg's lines name its call, never its addresses
// or numbers.
func (s *Server) EndLegs(ctx context.Context, legs map[string]Legs) LegsEnded {
	return endLegs(ctx, s.client, legs, &s.panics, s.log)
}

// CallInfo describes a call in progress for /v1/calls; it carries no
// consignee number and no caller address.
type CallInfo = callrec.LiveCall

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
func (s *Server) ActiveCalls() int { return s.live.count() }

// CallsTotal counts INVITEs that became calls.
func (s *Server) CallsTotal() int64 { return s.callsTotal.Load() }

// PendingCDRs is how many finished calls' records wait for the store.
func (s *Server) PendingCDRs() int { return s.backlog.Len() }

// MessagesRefused counts MESSAGE requests refused (virtual numbers carry no SMS).
func (s *Server) MessagesRefused() int64 { return s.messagesRefused.Load() }

// Panics counts panics recovered in request handling and in the goroutines
// of calls; each ended only its own request or call.
func (s *Server) Panics() int64 { return s.panics.n.Load() }

// Metrics are the KPIs of the server's calls (kpi.go) and of their media
// (media.Metrics), for /metrics.
func (s *Server) Metrics() []prometheus.Collector {
	return append(s.kpi.collectors(), s.opts.Ports.Metrics().Collectors()...)
}

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

// MalformedMessages returns the SIP messages received that did not parse
// or lacked the headers a transaction is matched by (Via, CSeq), by
// transport (vnum_sip_malformed_total). Every transport is present.
func (s *Server) MalformedMessages() map[string]int64 { return s.hostile.malformedCounts() }

// OverLimit returns the SIP messages refused because they went over one of
// vnum's limits on what a message may cost, by limit
// (vnum_sip_over_limit_total): header_fields, same_header, body,
// media_lines. Every limit is present.
func (s *Server) OverLimit() map[string]int64 { return s.hostile.overLimitCounts() }

// TrunkUp reports whether the outbound trunk answers its keepalives
// (always true when they are off), and why not when it does not.
func (s *Server) TrunkUp() (bool, string) { return s.trunk.up() }

// AuthFailures returns the failed digest attempts since the start, the
// sources blocked for them (security.auth_failures within a minute) since
// the start, and the sources blocked now.
func (s *Server) AuthFailures() (failures, blocks int64, blockedNow int) {
	st := s.auth.stats()
	return st.Failures, st.Blocks, st.Blocked
}

// LegBFailures returns how many leg B attempts failed since the start, by
// final status as a string ("486", "503", "408" for a ring timeout).
func (s *Server) LegBFailures() map[string]int64 { return s.legBFailures.byStatus() }

// ProtectedCalls returns the calls consignee protection refused or the
// consignee declined since the start, by reason (quiet_hours, capped,
// blocked, declined, restricted), for vnum_calls_protected_total. Every
// reason is present, zero or not.
func (s *Server) ProtectedCalls() map[string]int64 { return s.protected.byReason() }

// Recordings returns the calls' recordings written since the start and
// the bytes of their files (vnum_recordings_total,
// vnum_recording_bytes_total).
func (s *Server) Recordings() (written, bytes int64) {
	return s.recordings.written.Load(), s.recordings.bytes.Load()
}

// Registered reports whether an account has a valid registration.
func (s *Server) Registered(user string) bool {
	_, ok := s.reg.lookup(context.Background(), user)
	return ok
}
