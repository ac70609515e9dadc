// Package api serves vnum's admin HTTP API (README "The same by HTTP") on a binding.Store:
// merchants, accounts, the number pool, bindings, CDRs, bills, the calls
// in progress and the operational probes. Bodies are JSON both ways,
// errors are {"error": "..."} with a fitting status, and every /v1 call
// needs "Authorization: Bearer <token>" when a token is configured.
//
// The API knows no SIP: live calls, readiness and metrics come in as
// functions and handlers that cmd/vnum wires to the signalling server.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/protection"
)

// MaxBodyBytes is the largest request body the API reads; a larger one is
// answered 413.
const MaxBodyBytes = 1 << 20

// readyTimeout bounds one readiness check, so that a stuck store makes
// /readyz answer 503 rather than hang the prober.
const readyTimeout = 3 * time.Second

// CallLister returns the calls in progress, as signalling publishes them.
// It is a function so that this package does not depend on sip.
type CallLister func() []callrec.LiveCall

// Options configures the API.
type Options struct {
	// Token, when not empty, must come as "Authorization: Bearer <Token>"
	// on every /v1 call (admin.token). When empty, /v1 calls are answered
	// only when addressed to a loopback host name, which keeps web pages
	// from reaching the API through DNS rebinding.
	Token string
	// Rates price the bills (billing.per_minute, billing.rental_per_day).
	Rates binding.Rates
	// Currency is the bills' ISO 4217 code (billing.currency).
	Currency string
	// Location is the billing time zone (billing.timezone): months and
	// bare dates are read in it. Nil means UTC.
	Location *time.Location
	// Calls lists the calls in progress for GET /v1/calls; nil lists none.
	Calls CallLister
	// Ready reports whether the node can take calls (store reachable, SIP
	// listening) for GET /readyz; nil checks only the store.
	Ready func(context.Context) error
	// Metrics serves GET /metrics (Prometheus); nil answers 404.
	Metrics http.Handler
	// Now is the clock for creating, renewing and releasing bindings; nil
	// means the store's clock (binding.WithClock), which bills use too.
	Now func() time.Time
	// Log receives one line per request and the causes of 500s; nil
	// discards them.
	Log *slog.Logger
	// Protection returns the platform's consignee protection as it is
	// configured now (protection.*, which a running server takes anew on
	// SIGHUP): a merchant's own may only be stricter, and a closed
	// order's binding ends after its AfterClose. Nil means the
	// configuration's defaults.
	Protection func() protection.Platform
	// CheckWebhook checks that a webhook URL's host may be reached
	// (events.allow_private) when a merchant registers it; nil checks only
	// the URL's form. A refusal is answered 422.
	CheckWebhook func(ctx context.Context, url string) error
	// RecordingDir is the folder of the calls' recordings
	// (recording.dir), which GET /v1/cdrs/{id}/recording serves from.
	RecordingDir string
	// StreamIdle is how long a streamed response (the CDR and binding
	// listings) waits for the client to take the next part of it before
	// it is cut; 0 means DefaultStreamIdle. It stands in for the
	// server's WriteTimeout, which would cut a long export.
	StreamIdle time.Duration
}

// defaultProtection is the platform's protection of the configuration's
// defaults, for an API given none.
func defaultProtection() protection.Platform {
	p, err := config.Default().Protection.Platform()
	if err != nil {
		// The defaults are constants that validate: this cannot happen,
		// and if it did the closed order's end is what must not be lost.
		return protection.Platform{Location: time.UTC, Announce: protection.AnnounceOff, AfterClose: config.DefaultAfterClose}
	}
	return p
}

// route is one endpoint of the API.
type route struct {
	method string
	path   string
	// open routes need no token: probes and the metrics scraper.
	open   bool
	handle func(s *server, w http.ResponseWriter, r *http.Request) error
}

// routes is every endpoint the API serves, in one place: New registers
// them and a test checks that the OpenAPI document describes exactly these.
var routes = []route{
	{method: http.MethodPost, path: "/v1/merchants", handle: (*server).addMerchant},
	{method: http.MethodPost, path: "/v1/merchants/{id}/accounts", handle: (*server).addAccount},
	{method: http.MethodPost, path: "/v1/numbers", handle: (*server).addNumbers},
	{method: http.MethodGet, path: "/v1/numbers", handle: (*server).listNumbers},
	// Day-two administration (admin.go).
	{method: http.MethodGet, path: "/v1/merchants", handle: (*server).listMerchants},
	{method: http.MethodGet, path: "/v1/merchants/{id}", handle: (*server).getMerchant},
	{method: http.MethodGet, path: "/v1/merchants/{id}/accounts", handle: (*server).listAccounts},
	{method: http.MethodPut, path: "/v1/merchants/{id}/accounts/{user}/password", handle: (*server).setPassword},
	{method: http.MethodDelete, path: "/v1/merchants/{id}/accounts/{user}", handle: (*server).removeAccount},
	{method: http.MethodDelete, path: "/v1/numbers/{x}", handle: (*server).removeNumber},
	{method: http.MethodPost, path: "/v1/bindings", handle: (*server).createBinding},
	{method: http.MethodGet, path: "/v1/bindings", handle: (*server).listBindings},
	{method: http.MethodGet, path: "/v1/bindings/{id}", handle: (*server).getBinding},
	{method: http.MethodPost, path: "/v1/bindings/{id}/renew", handle: (*server).renewBinding},
	{method: http.MethodDelete, path: "/v1/bindings/{id}", handle: (*server).releaseBinding},
	// Consignee protection (protection.go).
	{method: http.MethodPost, path: "/v1/bindings/{id}/order-status", handle: (*server).setOrderStatus},
	{method: http.MethodGet, path: "/v1/merchants/{id}/protection", handle: (*server).getProtection},
	{method: http.MethodPut, path: "/v1/merchants/{id}/protection", handle: (*server).putProtection},
	{method: http.MethodPut, path: "/v1/merchants/{id}/announcement", handle: (*server).putAnnouncement},
	{method: http.MethodDelete, path: "/v1/merchants/{id}/announcement", handle: (*server).deleteAnnouncement},
	{method: http.MethodPost, path: "/v1/blocks", handle: (*server).addBlock},
	{method: http.MethodGet, path: "/v1/blocks", handle: (*server).listBlocks},
	{method: http.MethodDelete, path: "/v1/blocks/{id}", handle: (*server).removeBlock},
	{method: http.MethodGet, path: "/v1/cdrs", handle: (*server).listCDRs},
	{method: http.MethodGet, path: "/v1/cdrs/{id}/recording", handle: (*server).getRecording},
	{method: http.MethodGet, path: "/v1/bills/{merchant}/{month}", handle: (*server).bill},
	{method: http.MethodGet, path: "/v1/calls", handle: (*server).calls},
	// Call events (events.go).
	{method: http.MethodGet, path: "/v1/merchants/{id}/webhook", handle: (*server).getWebhook},
	{method: http.MethodPut, path: "/v1/merchants/{id}/webhook", handle: (*server).setWebhook},
	{method: http.MethodDelete, path: "/v1/merchants/{id}/webhook", handle: (*server).removeWebhook},
	{method: http.MethodGet, path: "/v1/events", handle: (*server).listEvents},
	{method: http.MethodPost, path: "/v1/events/{id}/retry", handle: (*server).retryEvent},
	{method: http.MethodGet, path: "/v1/openapi.json", handle: (*server).openAPI},
	{method: http.MethodGet, path: "/metrics", open: true, handle: (*server).metrics},
	{method: http.MethodGet, path: "/healthz", open: true, handle: (*server).healthz},
	{method: http.MethodGet, path: "/readyz", open: true, handle: (*server).readyz},
}

// Routes returns the endpoints the API serves as "METHOD /path" patterns
// (http.ServeMux syntax, which is also OpenAPI's path template syntax).
func Routes() []string {
	out := make([]string, len(routes))
	for i, rt := range routes {
		out[i] = rt.method + " " + rt.path
	}
	return out
}

// server is the API's state; it is immutable after New.
type server struct {
	store *binding.Store
	opts  Options
	mux   *http.ServeMux
	log   *slog.Logger
	// tokenSum is SHA-256 of the token: comparing digests of equal length
	// in constant time reveals neither the token nor its length.
	tokenSum [sha256.Size]byte
}

// New returns the admin API on store.
func New(store *binding.Store, opts Options) http.Handler {
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Now == nil {
		opts.Now = store.Now
	}
	if opts.Protection == nil {
		opts.Protection = defaultProtection
	}
	if opts.StreamIdle <= 0 {
		opts.StreamIdle = DefaultStreamIdle
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{store: store, opts: opts, mux: http.NewServeMux(), log: log,
		tokenSum: sha256.Sum256([]byte(opts.Token))}
	for _, rt := range routes {
		s.mux.HandleFunc(rt.method+" "+rt.path, func(w http.ResponseWriter, r *http.Request) {
			if err := rt.handle(s, w, r); err != nil {
				s.fail(w, r, err)
			}
		})
	}
	return s
}

// ServeHTTP checks access, routes the request and logs it. Unknown paths
// and methods get JSON errors like everything else: a 404, or a 405 with
// Allow. A path that is not in canonical form ("//v1/numbers",
// "/v1/bindings//renew", "/v1/x/../numbers", a trailing slash) is not a
// path the API serves, so it is a 404 too, never the mux's redirect to
// another path: a redirect would skip the token check of /v1 and point a
// POST or DELETE somewhere the client did not name.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	h, pattern := s.mux.Handler(r)
	canonical := isCanonical(r.URL.EscapedPath())
	if !canonical {
		h, pattern = nil, ""
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("admin api: handler panicked", "method", r.Method, "route", pattern,
				"error", fmt.Sprint(v))
			if !sw.wrote {
				s.writeError(sw, http.StatusInternalServerError, msgInternal)
			}
		}
		s.logRequest(r, pattern, sw, time.Since(start))
	}()

	if isV1(r.URL.Path) {
		if err := s.checkAccess(r); err != nil {
			s.fail(sw, r, err)
			return
		}
	}
	if pattern == "" {
		// No route: let the mux say whether the path is served with other
		// methods (405 and which), and answer that in JSON; anything else
		// is a 404.
		status := http.StatusNotFound
		if h != nil {
			probe := &statusWriter{ResponseWriter: discardWriter{header: http.Header{}}}
			h.ServeHTTP(probe, r)
			if allow := probe.Header().Get("Allow"); allow != "" && probe.status == http.StatusMethodNotAllowed {
				sw.Header().Set("Allow", allow)
				status = http.StatusMethodNotAllowed
			}
		}
		s.writeError(sw, status, strings.ToLower(http.StatusText(status)))
		return
	}
	s.mux.ServeHTTP(sw, r)
}

// isCanonical reports whether an escaped request path is in the form the
// routes are written in: rooted, without empty, "." or ".." segments and
// without a trailing slash.
func isCanonical(escaped string) bool {
	return escaped != "" && path.Clean(escaped) == escaped
}

// isV1 reports whether path is under the token-protected /v1 prefix.
func isV1(path string) bool { return path == "/v1" || strings.HasPrefix(path, "/v1/") }

// checkAccess enforces the bearer token, or without a token the loopback
// Host rule.
func (s *server) checkAccess(r *http.Request) error {
	if s.opts.Token == "" {
		if !loopbackHost(r.Host) {
			return &httpError{status: http.StatusForbidden,
				msg: "admin.token is not set: only requests to a loopback host (127.0.0.1, [::1], localhost) are answered"}
		}
		return nil
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	// RFC 6750 §2.1: the scheme is case-insensitive.
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return errUnauthorized
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) != 1 {
		return errUnauthorized
	}
	return nil
}

// loopbackHost reports whether a Host header names this machine.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// logRequest writes one line per request; probes and scrapes go to debug.
// A streamed response adds the rows it wrote, and one that was cut says so
// (see statusWriter.outcome).
func (s *server) logRequest(r *http.Request, pattern string, sw *statusWriter, d time.Duration) {
	level := slog.LevelInfo
	if !isV1(r.URL.Path) && sw.status < http.StatusInternalServerError {
		level = slog.LevelDebug
	}
	route := pattern
	if route == "" {
		route = "(none)"
	}
	msg, level, extra := sw.outcome(level)
	s.log.Log(r.Context(), level, msg, append([]any{"method", r.Method, "path", r.URL.Path, "route", route,
		"status", sw.status, "ms", d.Milliseconds(), "remote", r.RemoteAddr}, extra...)...)
}

// statusWriter remembers the status written through it, and how a
// streamed response went.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	stream *streamNote
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// discardWriter is a ResponseWriter that keeps headers and drops the body.
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}
