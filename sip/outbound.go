package sip

import (
	"context"
	"errors"
	"net/netip"
	"strings"
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

func (c *call) legBCallID() string {
	c.bMu.Lock()
	defer c.bMu.Unlock()
	if c.b == nil {
		return ""
	}
	return c.b.InviteRequest.CallID().Value()
}

// dialB places leg B: a fresh INVITE to the trunk with Request-URI = B and
// From/P-Asserted-Identity = X, built from nothing of leg A so that the
// consignee never sees the caller (SPEC §4). While B rings the caller hears
// B's early media or a ringback tone. On answer the media is bridged.
func (c *call) dialB(t Target) (endReason, int) {
	s := c.s
	if s.trunkHost == "" {
		c.log.Error("no outbound trunk configured")
		c.play("unavailable")
		return reasonTrunkFailed, 503
	}
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
	c.sdpB = media.Offer(sock.IP, sock.Port, sessionID(), offerCodecs, dtmfB)

	x := sanitizeHeaderValue(t.Host)
	bUser := sanitizeHeaderValue(formatNumber(t.Consignee, s.opts.NumberFormat))
	recipient := sip.Uri{Scheme: "sip", User: bUser, Host: s.trunk.Host, Port: s.trunk.Port}
	req := sip.NewRequest(sip.INVITE, recipient)
	if tr, ok := s.trunk.UriParams.Get("transport"); ok && tr != "" {
		req.SetTransport(strings.ToUpper(tr))
	}
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: x, Host: s.host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: bUser, Host: s.trunk.Host}, Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:"+x+"@"+s.host+">"))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sip.NewHeader("Allow", allowed))
	req.SetBody(c.sdpB)

	c.streamB = media.NewStream(sock, netipZero, c.audioA, dtmfB, c.log)
	c.streamB.Start()

	c.setState(StateRinging)
	b, err := s.dialog.WriteInvite(c.ctx, req)
	if err != nil {
		c.log.Error("sending INVITE to trunk", "error", err)
		c.play("unavailable")
		return reasonTrunkFailed, 503
	}
	c.bMu.Lock()
	c.b = b
	c.bMu.Unlock()
	s.mu.Lock()
	s.byB[req.CallID().Value()] = c
	s.mu.Unlock()

	ringCtx, cancelRing := context.WithTimeout(c.ctx, s.opts.RingTimeout)
	defer cancelRing()
	var rb ringback
	defer rb.stop()
	early := false
	err = b.WaitAnswer(ringCtx, sipgo.AnswerOptions{
		Username: s.opts.TrunkUsername,
		Password: s.opts.TrunkPassword,
		OnResponse: func(res *sip.Response) error {
			c.log.Debug("leg B response", "status", res.StatusCode)
			if res.StatusCode < 180 || res.StatusCode >= 200 {
				return nil
			}
			c.updateCDR(func(cdr *CDR) {
				if cdr.RingingAt.IsZero() {
					cdr.RingingAt = time.Now().UTC()
				}
			})
			if len(res.Body()) > 0 && !early {
				if d, err := media.ParseSDP(res.Body()); err == nil && d.Port > 0 {
					// B's early media replaces our ringback (RFC 3960).
					rb.stop()
					early = true
					c.streamB.SetRemote(addrPort(d))
					c.startBridge()
					return nil
				}
			}
			if !early {
				rb.start(c)
			}
			return nil
		},
	})
	rb.stop()
	if err != nil {
		return c.legBFailed(b, err, ringCtx)
	}
	if err := b.Ack(context.WithoutCancel(c.ctx)); err != nil {
		c.log.Error("ACK to trunk", "error", err)
	}
	context.AfterFunc(b.Context(), func() { c.cancel(reasonCalleeHangup) })
	if c.ctx.Err() != nil {
		return c.reason(), 0
	}
	d, err := media.ParseSDP(b.InviteResponse.Body())
	if err != nil {
		c.log.Error("trunk answer SDP", "error", err)
		return reasonTrunkFailed, 488
	}
	if _, _, err := media.ParseAnswer(offerCodecs, d); err != nil {
		c.log.Error("trunk answer codec", "error", err)
		return reasonTrunkFailed, 488
	}
	c.streamB.SetRemote(addrPort(d))
	c.updateCDR(func(cdr *CDR) {
		cdr.AnsweredAt = time.Now().UTC()
		cdr.SIPStatus = b.InviteResponse.StatusCode
	})
	if !c.answeredA.Load() {
		// Early mode: the caller is answered only when B answers.
		if err := c.a.RespondSDP(c.sdpA); err != nil {
			return reasonNoAck, 0
		}
		c.answeredA.Store(true)
	}
	c.setState(StateBridged)
	c.startBridge()
	c.log.Info("call bridged")
	return reasonNone, 0
}

// legBFailed maps a failed leg B to the reason the call ends, telling the
// caller with a prompt when leg A is answered. A 2xx that crossed our
// CANCEL is acknowledged and hung up (SIPGO-NOTES pitfall 3).
func (c *call) legBFailed(b *sipgo.DialogClientSession, err error, ringCtx context.Context) (endReason, int) {
	if res := b.InviteResponse; res != nil && res.IsSuccess() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
		defer cancel()
		if aerr := b.Ack(ctx); aerr == nil {
			if berr := b.Bye(ctx); berr != nil {
				c.log.Debug("bye after crossed cancel", "error", berr)
			}
		}
	}
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
	default:
		r, status = reasonTrunkFailed, 408
	}
	c.log.Info("leg B failed", "status", status, "error", err)
	c.updateCDR(func(cdr *CDR) { cdr.SIPStatus = status })
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
