package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
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
// its REGISTER came from.
func contactTarget(user string, reg registration) legBTarget {
	return legBTarget{uri: reg.contact, to: sip.Uri{Scheme: "sip", User: user, Host: reg.contact.Host}, dest: reg.source}
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
	var dtmfB *media.Codec
	if _, def := media.DefaultCodecs(); def != nil {
		d := *def
		dtmfB = &d
	}
	offerCodecs := []media.Codec{c.audioA}
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
				// Early media replaces our ringback (RFC 3960).
				rb.stop()
				early = true
				c.streamB.SetRemote(addrPort(d))
				c.startBridge()
				return nil
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
		chosen := pickFailure(failed)
		for _, f := range failed {
			if f.b != chosen.b {
				c.hangUpCrossed(f)
			}
		}
		return c.legBFailed(chosen, ringCtx)
	}
	// The other forks are cancelled; any of them that answers anyway is
	// acknowledged and hung up (SIPGO-NOTES pitfall 3).
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
	if err := b.Ack(context.WithoutCancel(c.ctx)); err != nil {
		c.log.Error("ACK to leg B", "error", err)
	}
	context.AfterFunc(b.Context(), func() { c.cancel(reasonCalleeHangup) })
	d, err := media.ParseSDP(b.InviteResponse.Body())
	if err != nil {
		c.log.Error("leg B answer SDP", "error", err)
		return reasonTrunkFailed, 488
	}
	if _, _, err := media.ParseAnswer(offerCodecs, d); err != nil {
		c.log.Error("leg B answer codec", "error", err)
		return reasonTrunkFailed, 488
	}
	c.streamB.SetRemote(addrPort(d))
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
	c.startBridge()
	c.log.Info("call bridged")
	return reasonNone, 0
}

// hangUpCrossed acknowledges and hangs up a leg B whose 2xx crossed our
// CANCEL: WaitAnswer neither ACKs nor BYEs it (SIPGO-NOTES pitfall 3).
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
		if errors.As(f.err, &dr) && (dr.Res.StatusCode == 486 || dr.Res.StatusCode == 600) {
			return f
		}
	}
	return failed[0]
}

// legBFailed maps a failed leg B to the reason the call ends, telling the
// caller with a prompt when leg A is answered. A 2xx that crossed our
// CANCEL is acknowledged and hung up (SIPGO-NOTES pitfall 3).
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
		switch status {
		case 486, 600:
			r = reasonBusy
		case 408, 480:
			r = reasonNoAnswer
		case 404, 403, 410, 484, 603, 604:
			r = reasonRejected
		default:
			if status >= 500 {
				r = reasonTrunkFailed
			} else {
				r = reasonRejected
			}
		}
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

// startBridge starts relaying media between the legs (once).
func (c *call) startBridge() {
	if c.bridged.Swap(true) {
		return
	}
	c.bridgeWG.Add(1)
	go func() {
		defer c.bridgeWG.Done()
		defer c.guardGo("bridge")
		if err := media.Bridge(c.ctx, c.streamA, c.streamB); err != nil && c.ctx.Err() == nil {
			c.log.Debug("bridge", "error", err)
		}
	}()
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
