package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/sip/sipua"
)

// Demo data: one merchant, one softphone account, one host number and the
// consignee the bindings hide.
const (
	demoMerchant  = "demo-shop"
	demoUser      = "alice"
	demoHost      = "17000000001"
	demoConsignee = "13800138000"
	// demoBusyConsignee is a consignee whose phone is busy.
	demoBusyConsignee = "13700137000"
)

func newDemoCmd() *cobra.Command {
	var lang string
	var talk time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole call path on this machine: real SIP and RTP over loopback, CDRs and the bill",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDemoFlags(lang, talk); err != nil {
				return err
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), lang, talk, time.Now)
		},
	}
	cmd.Flags().StringVar(&lang, "lang", "zh", "prompt language `zh|en`")
	cmd.Flags().DurationVar(&talk, "talk", 3*time.Second, "talk time of each answered call, 1s to 10m")
	return cmd
}

// Bounds of --talk: under a second too few packets cross to tell media
// from noise; the demo is not a soak test.
const (
	minDemoTalk = time.Second
	maxDemoTalk = 10 * time.Minute
)

// checkDemoFlags refuses flags that would make the demo prove nothing
// (--talk -1s relays no RTP at all).
func checkDemoFlags(lang string, talk time.Duration) error {
	if lang != "zh" && lang != "en" {
		return fmt.Errorf("%w: --lang %q: want zh or en", errUsage, lang)
	}
	if talk < minDemoTalk || talk > maxDemoTalk {
		return fmt.Errorf("%w: --talk %s: want a duration from %s to %s", errUsage, config.FormatDuration(talk),
			config.FormatDuration(minDemoTalk), config.FormatDuration(maxDemoTalk))
	}
	return nil
}

// demo holds the parts of a demo run.
type demo struct {
	out     io.Writer
	step    int
	cfg     *config.Config
	node    *node
	carrier *sipua.Carrier
	phone   *sipua.Softphone
	vnum    netip.AddrPort
	talk    time.Duration
	// created is the one instant the demo's bindings are created at; the
	// bill shown is that of its month, so a demo run at a month's end
	// never bills the next, empty month.
	created time.Time
	prot    demoProtection
	failed  []string
}

func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "%2d. %s\n", d.step, fmt.Sprintf(format, args...))
}

func (d *demo) detail(format string, args ...any) {
	fmt.Fprintf(d.out, "      %s\n", fmt.Sprintf(format, args...))
}

func (d *demo) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.failed = append(d.failed, msg)
	fmt.Fprintf(d.out, "      FAILED: %s\n", msg)
}

// runDemo starts vnum on loopback with a temporary SQLite store and a
// simulated carrier, places real calls through it and prints each step,
// the CDR rows and the bill. It fails unless every call went as expected,
// media included. now is read once, for the bindings' creation.
func runDemo(ctx context.Context, out io.Writer, lang string, talk time.Duration, now func() time.Time) error {
	if err := checkDemoFlags(lang, talk); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "vnum-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)

	carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer", RingFor: 800 * time.Millisecond,
		Busy: []string{demoBusyConsignee}}, quiet)
	if err != nil {
		return fmt.Errorf("simulated carrier: %w", err)
	}
	defer carrier.Close()

	c := config.Default()
	c.SIP.Listen = []string{"udp://127.0.0.1:0"}
	c.Store.DSN = filepath.Join(dir, "vnum.db")
	c.Trunk.Outbound = "sip:" + carrier.Addr.String() + ";transport=udp"
	c.IVR.Language = lang
	c.IVR.FirstDigitTimeout = 3 * time.Second
	c.IVR.InterDigitTimeout = 2 * time.Second
	c.Protection.QuietHours = demoQuietHours
	c.Protection.CallsPerDay = demoCallsPerDay
	c.Protection.ConfirmTimeout = demoConfirmTimeout
	if err := c.Validate(); err != nil {
		return err
	}
	loc, err := time.LoadLocation(c.Protection.Timezone)
	if err != nil {
		return err
	}
	d := &demo{out: out, cfg: c, carrier: carrier, talk: talk, created: now(),
		prot: demoProtection{clock: &movedClock{}, loc: loc}}
	// The node reads the demo's clock: daytime on the consignee's clock,
	// whatever the hour the demo runs at, until it shows quiet hours.
	d.daytime()
	fmt.Fprintln(out, "vnum demo: a merchant calls a consignee through a virtual number, over real SIP and RTP on loopback")

	ext, busyExt, err := d.seed(ctx)
	if err != nil {
		return err
	}
	d.node, err = startNodeAt(ctx, c, quiet, true, nil, d.prot.clock.now)
	if err != nil {
		return err
	}
	defer d.node.stop(context.Background())
	d.vnum = netip.MustParseAddrPort(d.node.sip.Addr("udp"))
	d.say("vnum listening on udp %s, media relay on %s ports %s; carrier trunk at %s", d.vnum, c.Media.IP, c.Media.RTPPorts, carrier.Addr)

	if d.phone, err = sipua.NewSoftphone(demoUser, demoPassword, quiet); err != nil {
		return err
	}
	defer d.phone.Close()
	if d.prot.mall, err = sipua.NewSoftphone(demoMallUser, demoMallPassword, quiet); err != nil {
		return err
	}
	defer d.prot.mall.Close()

	d.call(ctx, "dials X and keys the extension over RFC 4733, barging in on the prompt", demoHost, ext, false)
	d.call(ctx, "dials the direct form "+demoHost+","+ext+" (no prompt); the consignee hangs up", demoHost+","+ext, "", true)
	d.busy(ctx, demoHost+","+busyExt)
	d.wrongExtension(ctx, ext)
	d.quietHours(ctx, demoHost+","+ext)
	d.capped(ctx, demoHost+","+ext)
	d.confirmAndBlock(ctx)
	d.privacy()
	if err := d.report(ctx); err != nil {
		return err
	}
	if len(d.failed) > 0 {
		return fmt.Errorf("demo failed: %s", strings.Join(d.failed, "; "))
	}
	fmt.Fprintln(out, "\ndemo OK: every call went as expected")
	return nil
}

// seed adds the merchant, account, host number and bindings through the
// same store the CLI uses, and returns the extensions of the shipped
// orders: the one whose consignee answers, and the busy one's.
func (d *demo) seed(ctx context.Context) (string, string, error) {
	s, _, err := createCLIStore(ctx, d.cfg)
	if err != nil {
		return "", "", err
	}
	defer s.Close()
	d.say("store: temporary SQLite file (WAL, migrations applied)")
	if err := s.AddMerchant(ctx, demoMerchant, "Demo Shop"); err != nil {
		return "", "", err
	}
	if err := s.AddAccount(ctx, demoMerchant, demoUser, demoPassword); err != nil {
		return "", "", err
	}
	if err := s.AddNumbers(ctx, demoHost); err != nil {
		return "", "", err
	}
	d.say("merchant %s, SIP account %s (digest secret only), host number %s", demoMerchant, demoUser, demoHost)
	b, err := s.CreateBinding(ctx, binding.CreateRequest{Merchant: demoMerchant, Order: "A1001", Consignee: demoConsignee, OrderStatus: "shipped"}, d.created)
	if err != nil {
		return "", "", err
	}
	d.say("binding for shipped order A1001: virtual number %s (dial %s), expires %s", b.Display(), b.Dial(), b.ExpiresAt.Format(time.RFC3339))
	busy, err := s.CreateBinding(ctx, binding.CreateRequest{Merchant: demoMerchant, Order: "A1003", Consignee: demoBusyConsignee, OrderStatus: "shipped"}, d.created)
	if err != nil {
		return "", "", err
	}
	d.say("binding for shipped order A1003: virtual number %s; this consignee's phone is busy", busy.Display())
	_, err = s.CreateBinding(ctx, binding.CreateRequest{Merchant: demoMerchant, Order: "A1002", Consignee: "13900139000", OrderStatus: "unpaid"}, d.created)
	if err == nil {
		d.fail("a binding for an unpaid order was accepted")
	} else {
		d.say("binding for unpaid order A1002 refused: %v", err)
	}
	if err := d.seedProtection(ctx, s); err != nil {
		return "", "", err
	}
	return b.Extension, busy.Extension, nil
}

// demoPassword is the demo account's password; the demo's store is
// temporary and listens on loopback only.
const demoPassword = "demo-password"

// call places one call: dial, key E (unless direct), talk both ways, hang
// up from one side.
func (d *demo) call(ctx context.Context, what, dialled, digits string, calleeHangs bool) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d.say("call: %s %s", demoUser, what)
	dlg, heard, err := d.dial(ctx, dialled)
	if err != nil {
		d.fail("dialling %s: %v", dialled, err)
		return
	}
	if digits != "" {
		d.detail("vnum answered %d %s at once (digest auth passed): the caller must key the extension", dlg.InviteResponse.StatusCode, dlg.InviteResponse.Reason)
	} else {
		d.detail("vnum said %s while the consignee's phone rang, and %d %s only when the consignee answered (answer supervision)",
			strings.Join(heard, ", "), dlg.InviteResponse.StatusCode, dlg.InviteResponse.Reason)
		if !slices.Contains(heard, "180 Ringing") {
			d.fail("no 180 Ringing before the answer of a direct dial")
		}
	}
	media, err := sipua.MediaAddr(dlg.InviteResponse.Body())
	if err != nil {
		d.fail("answer SDP: %v", err)
		return
	}
	if digits != "" {
		time.Sleep(500 * time.Millisecond) // a moment of the prompt, then barge in
		if err := sipua.SendDigits(d.phone.RTP, media, 101, digits); err != nil {
			d.fail("sending digits: %v", err)
			return
		}
		d.detail("keyed %s as RFC 4733 telephone-events", digits)
	}
	inv, err := d.carrier.NextInvite(15 * time.Second)
	if err != nil {
		d.fail("%v", err)
		_ = dlg.Bye(ctx)
		return
	}
	d.detail("carrier got INVITE for %s from %s (the caller is not shown)", inv.Recipient.User, inv.From().Address.User)
	ds, err := d.carrier.NextSession(15 * time.Second)
	if err != nil {
		d.fail("%v", err)
		_ = dlg.Bye(ctx)
		return
	}
	bMedia, err := sipua.MediaAddr(inv.Body())
	if err != nil {
		d.fail("leg B SDP: %v", err)
		return
	}
	d.detail("consignee answered; talking for %s", d.talk)
	packets := int(d.talk / (20 * time.Millisecond))
	go func() { _ = sipua.SendAudio(ctx, d.phone.RTP, media, 0xA11CE, packets) }()
	go func() { _ = sipua.SendAudio(ctx, d.carrier.RTP, bMedia, 0xB0B, packets) }()
	heardByB := make(chan int, 1)
	go func() { heardByB <- sipua.CountRTP(d.carrier.RTP, d.talk, 0xA11CE) }()
	heardByA := sipua.CountRTP(d.phone.RTP, d.talk, 0xB0B)
	hb := <-heardByB
	d.detail("relayed RTP: consignee heard %d packets, caller heard %d", hb, heardByA)
	if err := checkMedia(packets, hb, heardByA); err != nil {
		d.fail("%v", err)
	}
	if calleeHangs {
		err = ds.Bye(ctx)
		d.detail("consignee hangs up: %v", errText(err))
	} else {
		err = dlg.Bye(ctx)
		d.detail("caller hangs up: %v", errText(err))
	}
	if err != nil {
		d.fail("hangup: %v", err)
	}
	if !waitFor(5*time.Second, func() bool { return d.node.sip.ActiveCalls() == 0 }) {
		d.fail("the call did not end on both legs")
	}
}

// dial sends an INVITE from the demo's softphone, answers the digest
// challenge and waits for the final response; heard is the provisional
// responses vnum sent, in order ("100 Trying", "180 Ringing", ...).
func (d *demo) dial(ctx context.Context, dialled string) (*sipgo.DialogClientSession, []string, error) {
	return d.dialAs(ctx, d.phone, dialled)
}

// dialAs is dial from softphone p.
func (d *demo) dialAs(ctx context.Context, p *sipua.Softphone, dialled string) (*sipgo.DialogClientSession, []string, error) {
	dlg, err := p.Invite(ctx, d.vnum, dialled)
	if err != nil {
		return nil, nil, err
	}
	var heard []string
	err = dlg.WaitAnswer(ctx, sipgo.AnswerOptions{Username: p.User, Password: p.Password,
		OnResponse: func(r *sip.Response) error {
			line := fmt.Sprintf("%d %s", r.StatusCode, r.Reason)
			if r.IsProvisional() && !slices.Contains(heard, line) {
				heard = append(heard, line)
			}
			return nil
		}})
	if err != nil {
		return dlg, heard, err
	}
	return dlg, heard, dlg.Ack(ctx)
}

// busy dials a consignee whose phone is busy: vnum never answers, the
// caller hears the "busy" prompt as early media and gets 486 with the
// Q.850 cause (a 200 and a BYE would bill the caller for nothing).
func (d *demo) busy(ctx context.Context, dialled string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d.say("call: %s dials %s, whose consignee is busy", demoUser, dialled)
	_, heard, err := d.dial(ctx, dialled)
	var dr *sipgo.ErrDialogResponse
	if !errors.As(err, &dr) {
		d.fail("want a final 486 Busy Here, got %v", errText(err))
		return
	}
	reason := ""
	if h := dr.Res.GetHeader("Reason"); h != nil {
		reason = h.Value()
	}
	d.detail("vnum said %s (the busy prompt as early media), then %s, Reason: %s; never 200 OK",
		strings.Join(heard, ", "), dr.Res.StartLine(), reason)
	if dr.Res.StatusCode != sip.StatusBusyHere || !strings.Contains(reason, "cause=17") {
		d.fail("want 486 with Q.850 cause 17, got %s (Reason %q)", dr.Res.StartLine(), reason)
	}
	if _, err := d.carrier.NextInvite(5 * time.Second); err != nil {
		d.fail("the busy consignee was never rung: %v", err)
	}
	if !waitFor(5*time.Second, func() bool { return d.node.sip.ActiveCalls() == 0 }) {
		d.fail("the busy call did not end")
	}
}

// checkMedia says whether RTP flowed both ways through the relay: each
// side sent sent packets and must have heard at least half of the other's
// (loopback loses none; the relay may drop a few while it latches).
func checkMedia(sent, heardByB, heardByA int) error {
	if sent < 1 || heardByB < 1 || heardByA < 1 || heardByB < sent/2 || heardByA < sent/2 {
		return fmt.Errorf("media did not flow both ways: of %d RTP packets sent each way the consignee heard %d, the caller %d",
			sent, heardByB, heardByA)
	}
	return nil
}

// wrongExtension keys a wrong extension three times: vnum says so, says
// goodbye and hangs up; nothing reaches the carrier.
func (d *demo) wrongExtension(ctx context.Context, good string) {
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	wrong := wrongDigits(good)
	d.say("call: %s keys a wrong extension (%s) three times", demoUser, wrong)
	dlg, err := d.phone.Call(ctx, d.vnum, demoHost)
	if err != nil {
		d.fail("dialling: %v", err)
		return
	}
	media, err := sipua.MediaAddr(dlg.InviteResponse.Body())
	if err != nil {
		d.fail("answer SDP: %v", err)
		return
	}
	for i := 0; i < 3; i++ {
		time.Sleep(300 * time.Millisecond)
		if err := sipua.SendDigits(d.phone.RTP, media, 101, wrong); err != nil {
			d.fail("sending digits: %v", err)
			return
		}
	}
	if !waitFor(30*time.Second, func() bool { return dlg.Context().Err() != nil }) {
		d.fail("vnum did not hang up after three wrong extensions")
		_ = dlg.Bye(ctx)
		return
	}
	d.detail("vnum played the invalid prompt, then goodbye, and hung up")
	if d.carrier.Pending() != 0 {
		d.fail("a wrong extension reached the carrier")
	}
}

// wrongDigits changes every digit of ext, so it is surely not bound.
func wrongDigits(ext string) string {
	b := []byte(ext)
	for i := range b {
		b[i] = '0' + (b[i]-'0'+5)%10
	}
	return string(b)
}

// privacy scans every SIP message each side received: the caller never
// sees B, the carrier never sees the caller.
func (d *demo) privacy() {
	leaksA, leaksB, scannedA := 0, 0, 0
	for _, p := range []*sipua.Softphone{d.phone, d.prot.mall} {
		for _, m := range p.Received() {
			scannedA++
			if strings.Contains(m, demoConsignee) {
				leaksA++
			}
		}
	}
	for _, m := range d.carrier.Received() {
		if strings.Contains(m, demoUser) || strings.Contains(m, demoMallUser) || strings.Contains(m, "vnum-softphone") {
			leaksB++
		}
	}
	d.say("privacy: %d SIP messages to the callers mention the consignee's number, %d to the carrier mention a caller (%d and %d scanned)",
		leaksA, leaksB, scannedA, len(d.carrier.Received()))
	if leaksA+leaksB > 0 {
		d.fail("privacy invariant broken")
	}
}

// report prints the CDR rows and the month's bill from the store, and
// checks the CDRs say what happened.
func (d *demo) report(ctx context.Context) error {
	s, err := openCLIStore(ctx, d.cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	cdrs, err := s.ListCDRs(ctx, demoMerchant, time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	all, err := s.ListCDRs(ctx, "", time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	d.say("CDRs (vnum cdr list):")
	if err := cdrRecords(all).print(d.out, formatTable); err != nil {
		return err
	}
	answered := 0
	for _, c := range cdrs {
		if c.Disposition == "answered" && c.BilledMinutes == 1 {
			answered++
		}
	}
	invalid, busy := 0, 0
	for _, c := range all {
		switch c.Disposition {
		case "invalid_extension":
			invalid++
		case "busy":
			if c.BilledMinutes == 0 {
				busy++
			}
		}
	}
	if answered != 2 || invalid != 1 || busy != 1 {
		d.fail("CDRs: want 2 answered calls billed 1 minute, 1 busy billed nothing and 1 invalid_extension, got %d, %d and %d",
			answered, busy, invalid)
	}
	d.checkProtectedCDRs(all)
	loc, err := time.LoadLocation(d.cfg.Billing.Timezone)
	if err != nil {
		return err
	}
	rates, err := ratesOf(d.cfg)
	if err != nil {
		return err
	}
	month := d.created.In(loc).Format("2006-01")
	b, err := s.Bill(ctx, demoMerchant, month, loc, rates, d.cfg.Billing.Currency)
	if err != nil {
		return err
	}
	d.say("bill for %s, %s (vnum bill): %d binding-day(s) × %s + %d minute(s) × %s", demoMerchant, month,
		b.BindingDays, d.cfg.Billing.RentalPerDay, b.Minutes, d.cfg.Billing.PerMinute)
	fmt.Fprintf(d.out, "      rental %s + calls %s = total %s %s\n", b.Rental, b.CallFee, b.Total, b.Currency)
	// Two bindings were created a moment ago: one binding-day each has begun
	// (README "CDRs and billing"). The calls are the month's answered ones: both, unless the
	// demo ran across the month's end and they belong to the next bill.
	from, to, err := binding.MonthRange(month, loc)
	if err != nil {
		return err
	}
	calls, minutes := 0, 0
	for _, c := range cdrs {
		if c.BilledMinutes > 0 && !c.StartedAt.Before(from) && c.StartedAt.Before(to) {
			calls, minutes = calls+1, minutes+c.BilledMinutes
		}
	}
	if b.BindingDays != 2 || b.Calls != calls || b.Minutes != minutes {
		d.fail("bill: want 2 binding-days and %d call(s) of %d minute(s) in all, got %d binding-day(s), %d call(s), %d minute(s)",
			calls, minutes, b.BindingDays, b.Calls, b.Minutes)
	}
	return nil
}

func waitFor(d time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ok() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ok()
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	var dr *sipgo.ErrDialogResponse
	if errors.As(err, &dr) {
		return dr.Res.StartLine()
	}
	return err.Error()
}
