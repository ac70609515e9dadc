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
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// udpReadBuffer is the SO_RCVBUF asked for SIP UDP sockets: the default
// overflows under load or in GC pauses (docs/sipgo.md §6).
const udpReadBuffer = 4 << 20

// allowed is the Allow header value: the methods vnum takes.
const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER"

// listener is one bound SIP listener: a UDP socket as the front door reads
// it, or a TCP or TLS listener behind its guard.
type listener struct {
	network string
	addr    net.Addr
	closer  interface{ Close() error }
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
		// resolved by vnum itself (trunk.dest).
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
	s.deps = s.callDeps()
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
	go s.trunk.dest()
	s.trunk.serve(ctx, s.client, s.host)
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
		pc, err := s.door.WrapUDP(conn, func(data []byte, from *net.UDPAddr) bool { return s.hostile.refuseAtRead(conn, data, from) })
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

// dialogFor is the dialog agent for a leg A request's transport.
func (s *Server) dialogFor(req *sip.Request) *sipgo.DialogUA {
	if d, ok := s.byTransport[strings.ToLower(req.Transport())]; ok {
		return d
	}
	return s.dialog
}
