package sip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// A crash of the node takes its calls' dialogs with it, but not the legs:
// the carrier keeps leg B up (and bills it) and the caller's side keeps
// leg A until their own timers end them. So each leg's dialog is kept
// with the call's open record from the moment the leg is answered
// (keepLegs, in the writes the call makes anyway), and the node's next
// start, having closed those records as interrupted, sends a BYE in each
// dialog (EndLegs). The dialog holds what such a BYE needs (RFC 3261
// §12.2.1.1), built by hand: sipgo's dialog sessions live in the process
// that made them.

// keptDialog is one leg's dialog as the store keeps it, in JSON. Leg B's
// names the consignee (Request-URI, To): it is never logged, and lives in
// no record merchants read.
type keptDialog struct {
	// CallID is the dialog's Call-ID.
	CallID string `json:"call_id"`
	// From is vnum's side, with its tag: the From of the requests vnum
	// sends in the dialog.
	From string `json:"from"`
	// To is the peer's side, with its tag.
	To string `json:"to"`
	// Target is the remote target, the peer's Contact: the Request-URI.
	Target string `json:"target"`
	// Route is the route set, in the order of the Route headers.
	Route []string `json:"route,omitempty"`
	// CSeq is the CSeq of vnum's next request in the dialog.
	CSeq uint32 `json:"cseq"`
	// Transport is the dialog's transport (UDP, TCP, TLS).
	Transport string `json:"transport"`
	// Dest is where vnum's requests in the dialog went, IP:port: where the
	// peer's INVITE or 2xx came from (see newClient), or the first route.
	Dest string `json:"dest"`
}

// legADialog is the caller's leg as vnum, its UAS, holds it (RFC 3261
// §12.1.1) once its INVITE inv was answered: the INVITE's Call-ID, its To
// with vnum's tag as From, its From as To, its Contact as remote target
// and its Record-Route as route set, in order.
func legADialog(inv *sip.Request) (string, error) {
	from, to, cseq, contact := inv.To(), inv.From(), inv.CSeq(), inv.Contact()
	if from == nil || to == nil || cseq == nil || contact == nil || inv.CallID() == nil {
		return "", errors.New("the INVITE lacks a header of the dialog")
	}
	var route []string
	for _, h := range inv.GetHeaders("Record-Route") {
		route = append(route, h.Value())
	}
	k := keptDialog{CallID: inv.CallID().Value(), From: from.Value(), To: to.Value(), Target: contact.Address.String(),
		Route: route, CSeq: cseq.SeqNo + 1, Transport: inv.Transport(), Dest: inv.Source()}
	return k.text()
}

// legBDialog is the leg vnum dialled as its UAC holds it (RFC 3261
// §12.1.2), its INVITE inv answered by res: the INVITE's Call-ID and
// From, the 2xx's To, its Contact as remote target and its Record-Route,
// reversed, as route set.
func legBDialog(inv *sip.Request, res *sip.Response) (string, error) {
	from, to, cseq := inv.From(), res.To(), inv.CSeq()
	if from == nil || to == nil || cseq == nil || inv.CallID() == nil {
		return "", errors.New("the INVITE or its answer lacks a header of the dialog")
	}
	target := inv.Recipient.String()
	if contact := res.Contact(); contact != nil {
		target = contact.Address.String()
	}
	rrs := res.GetHeaders("Record-Route")
	route := make([]string, 0, len(rrs))
	for i := len(rrs) - 1; i >= 0; i-- {
		route = append(route, rrs[i].Value())
	}
	k := keptDialog{CallID: inv.CallID().Value(), From: from.Value(), To: to.Value(), Target: target,
		Route: route, CSeq: cseq.SeqNo + 1, Transport: inv.Transport(), Dest: res.Source()}
	return k.text()
}

// text is k as the store keeps it. With a route set, requests go to the
// first route, as sipgo sends them.
func (k keptDialog) text() (string, error) {
	if len(k.Route) > 0 {
		var rr sip.Uri
		params := sip.NewParams()
		if _, err := sip.ParseAddressValue(k.Route[0], &rr, &params); err == nil {
			k.Dest = hostPort(rr, k.Transport)
		}
	}
	b, err := json.Marshal(k)
	return string(b), err
}

// hostPort is u's host and port, the transport's default port when u
// names none.
func hostPort(u sip.Uri, transport string) string {
	port := u.Port
	if port == 0 {
		port = sip.DefaultPort(transport)
	}
	return strings.Trim(u.Host, "[]") + ":" + strconv.Itoa(port)
}

// bye builds the BYE that ends the kept dialog text, and where it goes.
// Nothing in it is looked up in DNS: the address is the IP the dialog's
// messages came from or went to.
func bye(text string) (*sip.Request, error) {
	var k keptDialog
	if err := json.Unmarshal([]byte(text), &k); err != nil {
		return nil, fmt.Errorf("kept dialog: %w", err)
	}
	var target sip.Uri
	if err := sip.ParseUri(k.Target, &target); err != nil {
		return nil, fmt.Errorf("kept dialog: remote target: %w", err)
	}
	from := &sip.FromHeader{Params: sip.NewParams()}
	if _, err := sip.ParseAddressValue(k.From, &from.Address, &from.Params); err != nil {
		return nil, fmt.Errorf("kept dialog: from: %w", err)
	}
	to := &sip.ToHeader{Params: sip.NewParams()}
	if _, err := sip.ParseAddressValue(k.To, &to.Address, &to.Params); err != nil {
		return nil, fmt.Errorf("kept dialog: to: %w", err)
	}
	if !from.Params.Has("tag") || !to.Params.Has("tag") || k.CallID == "" {
		return nil, errors.New("kept dialog: a tag or the Call-ID is missing")
	}
	dest := k.Dest
	if len(k.Route) == 0 && sip.IsReliable(k.Transport) {
		// The peer's connection died with the process that had it; a new
		// one goes to where the peer listens, its Contact, when that is
		// an address (a name is never looked up).
		if ip, err := netip.ParseAddr(strings.Trim(target.Host, "[]")); err == nil {
			dest = hostPort(sip.Uri{Host: ip.String(), Port: target.Port}, k.Transport)
		}
	}
	if _, err := netip.ParseAddrPort(dest); err != nil {
		return nil, fmt.Errorf("kept dialog: no address to send to: %w", err)
	}
	req := sip.NewRequest(sip.BYE, target)
	cid := sip.CallIDHeader(k.CallID)
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: k.CSeq, MethodName: sip.BYE})
	req.AppendHeader(&maxFwd)
	for _, r := range k.Route {
		// Loose routing only (docs/sipgo.md §10).
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	req.SetTransport(k.Transport)
	req.SetDestination(dest)
	req.SetBody(nil)
	return req, nil
}

// LegsEnded is what EndLegs did.
type LegsEnded struct {
	// Legs is how many legs it sent a BYE in.
	Legs int
	// Ended is how many the peer ended (2xx).
	Ended int
	// Gone is how many the peer no longer had (481 or another final
	// status): nothing left up there either.
	Gone int
	// Failed is how many got no answer in time, or no BYE at all (a kept
	// dialog that does not read, no address to send to).
	Failed int
}

// endLegsAtOnce bounds the BYEs EndLegs has in flight.
const endLegsAtOnce = 32

// endLegs sends a BYE in each dialog the store kept for the calls a crash
// of this node cut (Server.EndLegs) with client, and waits for the
// answers until ctx ends.
func endLegs(ctx context.Context, client *sipgo.Client, legs map[string]Legs, panics *panicCounter, log *slog.Logger) LegsEnded {
	var (
		mu   sync.Mutex
		out  LegsEnded
		wg   sync.WaitGroup
		slot = make(chan struct{}, endLegsAtOnce)
	)
	for id, l := range legs {
		for _, leg := range []struct{ name, text string }{{"a", l.A}, {"b", l.B}} {
			if leg.text == "" {
				continue
			}
			mu.Lock()
			out.Legs++
			mu.Unlock()
			slot <- struct{}{}
			wg.Go(func() {
				defer func() { <-slot }()
				defer func() {
					if r := recover(); r != nil {
						panics.n.Add(1)
						log.Error("panic ending a leg", "call", id, "leg", leg.name, "panic", r)
						mu.Lock()
						out.Failed++
						mu.Unlock()
					}
				}()
				status, err := endLeg(ctx, client, leg.text)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					out.Failed++
					log.Debug("BYE in a crashed call's leg: no answer", "call", id, "leg", leg.name, "error", err)
				case status < 300:
					out.Ended++
					log.Debug("BYE in a crashed call's leg: ended", "call", id, "leg", leg.name, "status", status)
				default:
					out.Gone++
					log.Debug("BYE in a crashed call's leg: already gone", "call", id, "leg", leg.name, "status", status)
				}
			})
		}
	}
	wg.Wait()
	if out.Legs > 0 {
		log.Info("ended the legs of interrupted calls", "calls", len(legs), "legs", out.Legs,
			"ended", out.Ended, "gone", out.Gone, "failed", out.Failed)
	}
	return out
}

// endLeg sends a BYE in one kept dialog and returns the final status the
// peer answered.
func endLeg(ctx context.Context, client *sipgo.Client, text string) (int, error) {
	req, err := bye(text)
	if err != nil {
		return 0, err
	}
	res, err := client.Do(ctx, req)
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}
