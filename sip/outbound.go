package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
)

// netipZero is the remote of a stream whose peer address is not known yet.
var netipZero netip.AddrPort

// formatNumber renders B (stored as E.164) for leg B's Request-URI per
// trunk.number_format: national (13800138000) or e164 (+8613800138000).
func formatNumber(e164, format string) string {
	if format == "e164" {
		return e164
	}
	if strings.HasPrefix(e164, "+86") {
		return e164[3:]
	}
	return strings.TrimPrefix(e164, "+")
}

// legBTarget is where one INVITE of leg B goes: the trunk (B, or a PSTN
// caller on a callback) or a registered softphone (a callback).
type legBTarget struct {
	uri   sip.Uri // Request-URI
	to    sip.Uri // To
	dest  string  // where to send it, when not to the Request-URI (NAT)
	trunk bool    // answer digest challenges with the trunk credentials
}

// dialable reports whether user is a phone number as leg B's Request-URI
// carries it: digits, optionally after a "+". Numbers are validated where
// they enter vnum; this is the last check before one goes on the wire.
func dialable(user string) bool {
	digits := strings.TrimPrefix(user, "+")
	return digits != "" && len(digits) <= 15 && strings.Trim(digits, "0123456789") == ""
}

// trunkTarget sends number to the carrier trunk.
func (s *Server) trunkTarget(number string) legBTarget {
	user := sanitizeHeaderValue(number)
	uri := sip.Uri{Scheme: "sip", User: user, Host: s.trunk.Host, Port: s.trunk.Port}
	if tr, ok := s.trunk.UriParams.Get("transport"); ok && tr != "" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", tr)
	}
	return legBTarget{uri: uri, to: sip.Uri{Scheme: "sip", User: user, Host: s.trunk.Host}, dest: s.trunkDest(), trunk: true}
}

// contactTarget sends to a softphone's registered contact, at the address
// its REGISTER came from. The Request-URI is rebuilt from the parts of the
// registered Contact that routing needs, each checked: a Contact is the
// phone's own text, and URI headers ("?X-Foo=…") or parameters in it would
// otherwise become part of the INVITE (RFC 3261 §19.1.5 does not allow
// headers in a Request-URI at all).
func contactTarget(user string, reg registration) legBTarget {
	c := reg.contact
	uri := sip.Uri{Scheme: "sip", User: user, Host: c.Host, Port: c.Port}
	if strings.EqualFold(c.Scheme, "sips") {
		uri.Scheme = "sips"
	}
	if uriToken(c.User) {
		uri.User = c.User
	}
	if !validHost(c.Host) {
		// Only the REGISTER's source address can route this one.
		uri.Host, uri.Port = "invalid", 0
	}
	if c.UriParams != nil {
		if tr, ok := c.UriParams.Get("transport"); ok {
			switch strings.ToLower(tr) {
			case "udp", "tcp", "tls":
				uri.UriParams = sip.NewParams()
				uri.UriParams.Add("transport", strings.ToLower(tr))
			}
		}
	}
	return legBTarget{uri: uri, to: sip.Uri{Scheme: "sip", User: user, Host: uri.Host}, dest: reg.source}
}

// uriToken reports whether s may stand as the user part of a URI vnum
// sends: letters, digits and the marks of RFC 3261 §25.1 "unreserved"
// and "+", nothing that starts parameters, headers or escapes.
func uriToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_.!~*'()+", r):
		default:
			return false
		}
	}
	return true
}

// validHost reports whether h is an IP address or a host name (RFC 3261
// §25.1 hostname: labels of letters, digits and "-").
func validHost(h string) bool {
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return false
		}
	}
	return true
}

// legBRequest builds a fresh INVITE showing X as the caller: nothing of
// leg A is in it (SPEC §4).
func (c *call) legBRequest(x string, t legBTarget) *sip.Request {
	s := c.s
	x = sanitizeHeaderValue(x)
	req := sip.NewRequest(sip.INVITE, *t.uri.Clone())
	if t.dest != "" {
		req.SetDestination(t.dest)
	}
	if t.uri.UriParams != nil {
		if tr, ok := t.uri.UriParams.Get("transport"); ok && tr != "" {
			req.SetTransport(strings.ToUpper(tr))
		}
	}
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: x, Host: s.host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: t.to, Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:"+x+"@"+s.host+">"))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sip.NewHeader("Allow", allowed))
	req.SetBody(c.sdpB.body)
	return req
}

// dialB places leg B to the consignee: a fresh INVITE to the trunk with
// Request-URI = B and From/P-Asserted-Identity = X, so that the consignee
// never sees the caller (SPEC §4).
func (c *call) dialB(t Target) (endReason, int) {
	if c.s.trunkHost == "" {
		c.log.Error("no outbound trunk configured")
		c.play("unavailable")
		return reasonTrunkFailed, 503
	}
	return c.dial(t.Host, []legBTarget{c.s.trunkTarget(formatNumber(t.Consignee, c.s.opts.NumberFormat))})
}

// fork is one INVITE of leg B and how it ended.
type fork struct {
	b   *sipgo.DialogClientSession
	err error
}

// dial sends leg B's INVITE to every target at once (several when a
// callback rings all of a merchant's softphones); the first to answer is
// bridged and the others are cancelled. While they ring the caller hears
// early media or a ringback tone.
func (c *call) dial(x string, targets []legBTarget) (endReason, int) {
	s := c.s
	sock, err := s.opts.Ports.Open()
	if err != nil {
		c.log.Error("no RTP port for leg B", "error", err)
		return reasonInternal, 503
	}
	c.sockB = sock
	offerCodecs, dtmfB := legBCodecs(c.audioA)
	sid := sessionID()
	c.sdpB = sdpSession{body: media.Offer(c.s.sdpAddr(sock), sock.Port, sid, offerCodecs, dtmfB), id: sid, ver: sid}
	c.streamB = media.NewStream(sock, netipZero, c.audioA, dtmfB, c.log)
	c.streamB.Start()
	c.setState(StateRinging)

	ringCtx, cancelRing := context.WithTimeout(c.ctx, s.opts.RingTimeout)
	defer cancelRing()
	var rb ringback
	var mu sync.Mutex // OnResponse runs on every fork's goroutine
	early := false
	onResponse := func(res *sip.Response) error {
		if res.StatusCode < 180 || res.StatusCode >= 200 {
			return nil
		}
		c.noteCDR(func(cdr *CDR) {
			if cdr.RingingAt.IsZero() {
				cdr.RingingAt = time.Now().UTC()
			}
		})
		mu.Lock()
		defer mu.Unlock()
		if early {
			return nil
		}
		if len(res.Body()) > 0 {
			if d, err := media.ParseSDP(res.Body()); err == nil && d.Port > 0 {
				if audio, dtmf, err := media.ParseAnswer(offerCodecs, d); err == nil {
					// Early media replaces our ringback (RFC 3960). It
					// flows to the caller only: until B answers, what the
					// caller sends is IVR audio, not for B.
					rb.stop()
					early = true
					c.streamB.SetCodecs(audio, dtmf)
					c.streamB.SetRemote(addrPort(d))
					if err := media.Relay(c.streamB, c.streamA); err != nil {
						c.log.Debug("early media relay", "error", err)
					}
					return nil
				}
			}
		}
		rb.start(c)
		return nil
	}

	results := make(chan fork, len(targets))
	cancels := make([]context.CancelFunc, 0, len(targets))
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	for _, t := range targets {
		if t.trunk && !dialable(t.uri.User) {
			c.log.Error("leg B: not a phone number, not dialled")
			results <- fork{err: fmt.Errorf("%w: not a phone number", ErrTrunkFailed)}
			continue
		}
		req := c.legBRequest(x, t)
		b, err := s.dialog.WriteInvite(c.ctx, req)
		if err != nil {
			// sipgo's error quotes the request, B's number with it: the
			// details go to debug only.
			c.log.Error("sending leg B INVITE failed")
			c.log.Debug("sending leg B INVITE", "error", err)
			results <- fork{err: fmt.Errorf("%w: %v", ErrTrunkFailed, err)}
			continue
		}
		s.mu.Lock()
		s.byB[req.CallID().Value()] = c
		c.forkIDs = append(c.forkIDs, req.CallID().Value())
		s.mu.Unlock()
		forkCtx, cancel := context.WithCancel(ringCtx)
		cancels = append(cancels, cancel)
		opts := sipgo.AnswerOptions{OnResponse: onResponse}
		if t.trunk {
			opts.Username, opts.Password = s.opts.TrunkUsername, s.opts.TrunkPassword
		}
		go func() {
			results <- fork{b: b, err: c.safely("fork", func() error { return b.WaitAnswer(forkCtx, opts) })}
		}()
	}

	var winner *sipgo.DialogClientSession
	var failed []fork
	pending := len(targets)
	for winner == nil && pending > 0 {
		f := <-results
		pending--
		if f.err == nil {
			winner = f.b
			break
		}
		failed = append(failed, f)
	}
	mu.Lock()
	rb.stop()
	mu.Unlock()
	if winner == nil {
		// B's early media ends with B; the caller hears vnum's prompt.
		c.streamB.StopRelay()
		chosen := pickFailure(failed)
		for _, f := range failed {
			if f.b != chosen.b {
				c.hangUpCrossed(f)
			}
		}
		return c.legBFailed(chosen, ringCtx)
	}
	// The other forks are cancelled; any of them that answers anyway is
	// acknowledged and hung up (docs/sipgo.md §3).
	for _, cancel := range cancels {
		cancel()
	}
	if pending > 0 {
		c.forkWG.Add(1)
		go func() {
			defer c.forkWG.Done()
			defer c.guardGo("crossed forks")
			for ; pending > 0; pending-- {
				c.hangUpCrossed(<-results)
			}
		}()
	}
	return c.answered(winner, offerCodecs)
}

// answered takes the leg B that answered: ACK, media to its address, the
// CDR's answer time, and the bridge.
func (c *call) answered(b *sipgo.DialogClientSession, offerCodecs []media.Codec) (endReason, int) {
	answeredAt := time.Now().UTC()
	c.bMu.Lock()
	c.b = b
	c.bMu.Unlock()
	// The relay is up, both ways and in B's codec, before B's ACK and the
	// caller's 200 go out: the peers may send as soon as they have those,
	// and a packet that came before the relay would be taken for IVR
	// input and lost.
	d, err := media.ParseSDP(b.InviteResponse.Body())
	var audio media.Codec
	var dtmf *media.Codec
	if err == nil {
		audio, dtmf, err = media.ParseAnswer(offerCodecs, d)
	}
	if err == nil {
		err = c.connect(audio, dtmf, addrPort(d))
	}
	if aerr := b.Ack(context.WithoutCancel(c.ctx)); aerr != nil {
		c.log.Error("ACK to leg B", "error", aerr)
	}
	context.AfterFunc(b.Context(), func() { c.cancel(reasonCalleeHangup) })
	if err != nil {
		c.log.Error("leg B answer SDP", "error", err)
		return reasonTrunkFailed, 488
	}
	if !c.answeredA.Load() {
		// Early mode: the caller is answered only when B answers, and the
		// call is billed only once the caller has taken it. An ACK followed
		// at once by a BYE can make RespondSDP report failure although the
		// caller took the call: the ACK decides.
		if err := c.a.RespondSDP(c.sdpA.body); err != nil && !c.ackedA.Load() {
			if c.ctx.Err() != nil {
				return c.reason(), 487
			}
			c.answeredA.Store(true)
			return reasonNoAck, 0
		}
		c.answeredA.Store(true)
	}
	// Both legs are connected from here: the call is answered even if a
	// hangup is already on its way.
	c.updateCDR(func(cdr *CDR) {
		cdr.AnsweredAt = answeredAt
		cdr.SIPStatus = b.InviteResponse.StatusCode
	})
	if c.ctx.Err() != nil {
		return c.reason(), 0
	}
	c.setState(StateBridged)
	c.log.Info("call bridged", "codec_a", c.audioA.Name, "codec_b", audio.Name)
	return reasonNone, 0
}

// hangUpCrossed acknowledges and hangs up a leg B whose 2xx crossed our
// CANCEL: WaitAnswer neither ACKs nor BYEs it (docs/sipgo.md §3).
func (c *call) hangUpCrossed(f fork) {
	if f.b == nil {
		return
	}
	res := f.b.InviteResponse
	if f.err == nil || (res != nil && res.IsSuccess()) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
		defer cancel()
		if err := f.b.Ack(ctx); err == nil {
			if err := f.b.Bye(ctx); err != nil {
				c.log.Debug("bye after crossed cancel", "error", err)
			}
		}
	}
}

// pickFailure chooses which failed fork speaks for leg B: a busy phone
// before any other refusal, otherwise the first.
func pickFailure(failed []fork) fork {
	for _, f := range failed {
		var dr *sipgo.ErrDialogResponse
		if errors.As(f.err, &dr) && legBReason(dr.Res.StatusCode) == reasonBusy {
			return f
		}
	}
	return failed[0]
}

// legBFailed maps a failed leg B to the reason the call ends, telling the
// caller with a prompt when leg A is answered. A 2xx that crossed our
// CANCEL is acknowledged and hung up (docs/sipgo.md §3).
func (c *call) legBFailed(f fork, ringCtx context.Context) (endReason, int) {
	c.hangUpCrossed(f)
	err := f.err
	if c.ctx.Err() != nil {
		return c.reason(), 487
	}
	var r endReason
	var status int
	var dr *sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &dr):
		status = dr.Res.StatusCode
		r = legBReason(status)
	case errors.Is(ringCtx.Err(), context.DeadlineExceeded):
		r, status = reasonNoAnswer, 408
	case errors.Is(err, ErrTrunkFailed):
		r, status = reasonTrunkFailed, 503
	default:
		r, status = reasonTrunkFailed, 408
	}
	c.log.Info("leg B failed", "status", status, "reason", r.Error())
	c.log.Debug("leg B failed", "error", err)
	c.noteCDR(func(cdr *CDR) { cdr.SIPStatus = status })
	switch r {
	case reasonBusy:
		c.play("busy")
	case reasonNoAnswer:
		c.play("no_answer")
	default:
		c.play("unavailable")
	}
	return r, status
}

// legBCodecs is what leg B is offered for a caller that settled on audioA:
// both G.711 laws, the caller's first, so that a carrier taking only the
// other law still connects (the relay converts between them), and
// telephone-event.
func legBCodecs(audioA media.Codec) ([]media.Codec, *media.Codec) {
	// vnum's own payload type numbers: the relay maps them to the caller's.
	all, dtmf := media.DefaultCodecs()
	slices.SortStableFunc(all, func(a, b media.Codec) int {
		switch {
		case strings.EqualFold(a.Name, audioA.Name) == strings.EqualFold(b.Name, audioA.Name):
			return 0
		case strings.EqualFold(a.Name, audioA.Name):
			return -1
		}
		return 1
	})
	return all, dtmf
}

// connect sets leg B's stream to the codecs and address of B's answer and
// relays both ways at once (see answered). The streams are closed by end,
// which stops the relay.
func (c *call) connect(audio media.Codec, dtmf *media.Codec, remote netip.AddrPort) error {
	c.streamB.SetCodecs(audio, dtmf)
	c.streamB.SetRemote(remote)
	if err := media.Relay(c.streamA, c.streamB); err != nil {
		return err
	}
	if err := media.Relay(c.streamB, c.streamA); err != nil {
		return err
	}
	return nil
}

// ringback plays a ringback tone to the caller while B rings.
type ringback struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *ringback) start(c *call) {
	if r.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		defer c.guardGo("ringback")
		tone := media.Ringback(5 * time.Second)
		for ctx.Err() == nil {
			if err := c.streamA.Play(ctx, tone); err != nil {
				return
			}
		}
	}()
}

func (r *ringback) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
}
