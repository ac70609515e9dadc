package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/protection"
	"github.com/vnum/vnum/sip/sipua"
)

// The demo's consignee protection: the platform's quiet hours and daily
// cap, and a second merchant whose own protection has the consignee
// confirm each call.
const (
	demoQuietHours     = "21:00-08:00"
	demoCallsPerDay    = 2
	demoMall           = "demo-mall"
	demoMallUser       = "bob"
	demoMallPassword   = "demo-mall-password"
	demoConfirmTimeout = 5 * time.Second
)

// demoProtection is what the demo's protection steps need: the clock the
// node reads (moved into the night to show quiet hours), the consignee's
// time zone, the second merchant's softphone and the direct dials of its
// two bindings to the consignee.
type demoProtection struct {
	clock *movedClock
	loc   *time.Location
	mall  *sipua.Softphone
	dials [2]string
}

// seedProtection adds the second merchant, whose own protection asks the
// consignee to confirm (only stricter than the platform's), its account
// and two shipped orders to the consignee the first merchant calls.
func (d *demo) seedProtection(ctx context.Context, s *binding.Store) error {
	if err := s.AddMerchant(ctx, demoMall, "Demo Mall"); err != nil {
		return err
	}
	if err := s.AddAccount(ctx, demoMall, demoMallUser, demoMallPassword); err != nil {
		return err
	}
	platform, err := d.cfg.Protection.Platform()
	if err != nil {
		return err
	}
	if err := s.SetMerchantProtection(ctx, demoMall, protection.Own{Announce: protection.AnnounceConfirm}, platform); err != nil {
		return err
	}
	for i, order := range []string{"B2001", "B2002"} {
		b, err := s.CreateBinding(ctx, binding.CreateRequest{Merchant: demoMall, Order: order, Consignee: demoConsignee,
			OrderStatus: "shipped"}, d.created)
		if err != nil {
			return err
		}
		d.prot.dials[i] = b.Host + "," + b.Extension
	}
	d.say("protection: quiet hours %s and %d calls a day per caller to a consignee (%s); merchant %s has its consignees confirm each call; bindings for its orders B2001 and B2002 reach the same consignee",
		demoQuietHours, demoCallsPerDay, d.cfg.Protection.Timezone, demoMall)
	return nil
}

// daytime sets the node's clock to 10:00 on the consignee's clock, after
// the bindings were created.
func (d *demo) daytime() {
	d.prot.clock.set(nextAt(d.created, d.prot.loc, 10, 0))
}

// quietHours moves the node's clock to 23:30 on the consignee's clock
// and dials: the call is refused before B rings, with the quiet-hours
// prompt and 480; then the clock goes back to the day.
func (d *demo) quietHours(ctx context.Context, dialled string) {
	d.prot.clock.set(nextAt(d.prot.clock.now(), d.prot.loc, 23, 30))
	d.say("protection: the demo's clock moves to %s, inside the quiet hours; %s dials %s",
		d.prot.clock.now().In(d.prot.loc).Format("15:04 MST"), demoUser, dialled)
	d.refused(ctx, d.phone, dialled, sip.StatusTemporarilyUnavailable, "the quiet-hours prompt")
	d.daytime()
}

// capped dials the consignee once more than the daily cap allows.
func (d *demo) capped(ctx context.Context, dialled string) {
	d.say("protection: back to daytime, %s dials %s a third time today (the cap is %d)", demoUser, dialled, demoCallsPerDay)
	d.refused(ctx, d.phone, dialled, sip.StatusTemporarilyUnavailable, "the call-limit prompt")
}

// refused dials a call consignee protection must refuse before B rings:
// the caller hears the prompt as early media, then gets code, never 200,
// and the carrier gets no INVITE.
func (d *demo) refused(ctx context.Context, p *sipua.Softphone, dialled string, code int, prompt string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, heard, err := d.dialAs(ctx, p, dialled)
	var dr *sipgo.ErrDialogResponse
	if !errors.As(err, &dr) || dr.Res.StatusCode != code {
		d.fail("want a final %d, got %v", code, errText(err))
		return
	}
	d.detail("vnum said %s (%s as early media), then %s; the consignee's phone never rang", strings.Join(heard, ", "),
		prompt, dr.Res.StartLine())
	if !waitFor(5*time.Second, func() bool { return d.node.sip.ActiveCalls() == 0 }) {
		d.fail("the refused call did not end")
	}
	if d.carrier.Pending() != 0 {
		d.fail("a refused call reached the carrier")
	}
}

// confirmAndBlock has the second merchant call the consignee, who hears
// the notice and keys 9: the caller gets 603 like any declined call, and
// the merchant is blocked; its call through its other binding to the
// same consignee is then refused before B rings.
func (d *demo) confirmAndBlock(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	d.say("protection: %s (merchant %s) dials %s; the consignee hears who calls and about which order, then keys 9", demoMallUser,
		demoMall, d.prot.dials[0])
	type outcome struct {
		heard []string
		err   error
	}
	done := make(chan outcome, 1)
	go func() {
		_, heard, err := d.dialAs(ctx, d.prot.mall, d.prot.dials[0])
		done <- outcome{heard, err}
	}()
	inv, err := d.carrier.NextInvite(15 * time.Second)
	if err != nil {
		d.fail("%v", err)
		return
	}
	if _, err := d.carrier.NextSession(15 * time.Second); err != nil {
		d.fail("%v", err)
		return
	}
	bMedia, err := sipua.MediaAddr(inv.Body())
	if err != nil {
		d.fail("leg B SDP: %v", err)
		return
	}
	time.Sleep(time.Second) // a moment of the notice
	if err := sipua.SendDigits(d.carrier.RTP, bMedia, 101, "9"); err != nil {
		d.fail("keying 9: %v", err)
		return
	}
	got := <-done
	var dr *sipgo.ErrDialogResponse
	if !errors.As(got.err, &dr) || dr.Res.StatusCode != sip.StatusGlobalDecline {
		d.fail("want a final 603 after the consignee's 9, got %v", errText(got.err))
		return
	}
	d.detail("the consignee answered and heard the notice while the caller heard %s; after 9 the caller got %s and the \"cannot take your call\" prompt",
		strings.Join(got.heard, ", "), dr.Res.StartLine())
	if !waitFor(5*time.Second, func() bool { return d.node.sip.ActiveCalls() == 0 }) {
		d.fail("the declined call did not end")
	}
	d.say("protection: %s dials %s, its other binding to the same consignee", demoMallUser, d.prot.dials[1])
	d.refused(ctx, d.prot.mall, d.prot.dials[1], sip.StatusGlobalDecline, "the same \"cannot take your call\" prompt")
	d.detail("blocked: a block sounds to the caller like a decline")
}

// checkProtectedCDRs checks that each protection step left its CDR,
// billed nothing.
func (d *demo) checkProtectedCDRs(all []callrec.Record) {
	want := map[string]int{"quiet_hours": 1, "capped": 1, "declined": 1, "blocked": 1}
	got := map[string]int{}
	for _, c := range all {
		if _, ok := want[string(c.Disposition)]; ok && c.BilledMinutes == 0 && c.Fee == 0 {
			got[string(c.Disposition)]++
		}
	}
	for disposition, n := range want {
		if got[disposition] != n {
			d.fail("CDRs: want %d %s call(s) billed nothing, got %d", n, disposition, got[disposition])
		}
	}
}
