// Command loadgen loads vnum's media relay with concurrent calls and counts
// every RTP packet, on both legs. It is the caller (a trunk source dialling
// X-E, no digest) and the carrier (vnum's trunk.outbound) at once, each
// with one SIP socket and one RTP socket for all its calls: packets are sent
// and read in batches (sendmmsg, recvmmsg), so that the generator is not
// what saturates first, as SIPp is at about 400 calls with media on two
// cores.
//
// At each level it sets up that many calls through vnum by SIP, plays G.711
// µ-law both ways (one 20 ms packet per call per direction), holds them
// for -hold, then stops the media, waits for the packets in flight and
// hangs up. It prints, per level: calls up and failed, the packets each
// side sent and received, relayed % (received / sent, both directions, the
// calls' whole life), vnum's CPU (user + system, from /proc/PID/stat), the
// machine's softirq, and the machine's CPU per relayed packet during the
// hold, less the generator's own.
//
//	loadgen -vnum 127.0.0.1:5060 -carrier 127.0.0.1:5070 -dial 17000000001-1234 \
//	    -levels 250,500,1000,2000 -rate 200 -hold 10s -pid $(pidof vnum)
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"golang.org/x/net/ipv4"

	"github.com/vnum/vnum/sip/sipua"
)

const (
	frame    = 20 * time.Millisecond
	payload  = 160 // G.711 at 8 kHz, 20 ms
	batchMax = 256
)

func main() {
	var o options
	flag.StringVar(&o.vnum, "vnum", "127.0.0.1:5060", "vnum's SIP address (UDP)")
	flag.StringVar(&o.carrier, "carrier", "127.0.0.1:5070", "the carrier's SIP address: vnum's trunk.outbound")
	flag.StringVar(&o.caller, "caller", "127.0.0.1", "the caller's address: one of vnum's trunk sources")
	flag.StringVar(&o.dial, "dial", "17000000001-1234", "what the callers dial (X-E)")
	levels := flag.String("levels", "100,200", "concurrent calls at each level, comma-separated")
	flag.IntVar(&o.rate, "rate", 100, "calls set up per second while a level fills")
	flag.DurationVar(&o.hold, "hold", 10*time.Second, "how long every call of a level is up together, measured")
	flag.IntVar(&o.pid, "pid", 0, "the relay's process id (vnum's, or rtpengine's), for its CPU (0: not measured)")
	flag.Int64Var(&o.idleKiB, "idle-kib", 0, "the relay's resident set before its first call, KiB (0: read at each level's start)")
	flag.StringVar(&o.label, "label", "vnum", "the system under test, the rows' first column")
	flag.BoolVar(&o.header, "header", true, "print the table's header first")
	flag.Parse()
	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("-levels: %q is not a positive number", f))
		}
		o.levels = append(o.levels, n)
	}
	if err := run(o); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(1)
}

type options struct {
	vnum, carrier, caller, dial string
	label                       string
	header                      bool
	levels                      []int
	rate, pid                   int
	idleKiB                     int64
	hold                        time.Duration
}

// side is the callers' or the carrier's end of every call: one SIP peer
// and one RTP socket, the calls it sends on and what it read.
type side struct {
	peer *sipua.Peer
	pc   *ipv4.PacketConn

	mu    sync.Mutex
	calls []*leg // sending

	sent, recv, bad, misrouted atomic.Uint64
	// bySource maps vnum's port a leg's packets come from to the leg.
	bySource sync.Map // netip.AddrPort -> *leg
}

// leg is one call's end on a side.
type leg struct {
	to      *net.UDPAddr // vnum's port for this leg: where it sends
	ssrc    uint32
	seq     uint16
	ts      uint32
	peer    atomic.Uint32 // the SSRC the leg hears, once heard
	sending atomic.Bool
}

func newSide(at netip.AddrPort, name string) (*side, error) {
	p, err := sipua.NewPeerOn(at, name, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	p.StopRecording()
	// Thousands of calls at 50 packets a second each: room for bursts.
	_ = p.RTP.SetReadBuffer(8 << 20)
	_ = p.RTP.SetWriteBuffer(8 << 20)
	return &side{peer: p, pc: ipv4.NewPacketConn(p.RTP)}, nil
}

// start sends l's packets from the next tick on.
func (s *side) start(l *leg, from netip.AddrPort) {
	s.bySource.Store(from, l)
	l.sending.Store(true)
	s.mu.Lock()
	s.calls = append(s.calls, l)
	s.mu.Unlock()
}

// stopAll stops sending on every leg and forgets them.
func (s *side) stopAll() {
	s.mu.Lock()
	for _, l := range s.calls {
		l.sending.Store(false)
	}
	s.calls = nil
	s.mu.Unlock()
	s.bySource.Clear()
}

// send sends one packet of every sending leg each 20 ms until ctx ends.
func (s *side) send(ctx context.Context) {
	t := time.NewTicker(frame)
	defer t.Stop()
	bufs := make([][]byte, batchMax)
	for i := range bufs {
		bufs[i] = make([]byte, 12+payload)
	}
	msgs := make([]ipv4.Message, batchMax)
	var legs []*leg
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		legs = append(legs[:0], s.calls...)
		s.mu.Unlock()
		for len(legs) > 0 {
			n := 0
			for n < batchMax && n < len(legs) {
				l := legs[n]
				pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: rtp.PayloadTypePCMU,
					SequenceNumber: l.seq, Timestamp: l.ts, SSRC: l.ssrc}, Payload: silence[:]}
				l.seq++
				l.ts += payload
				m, err := pkt.MarshalTo(bufs[n])
				if err != nil {
					fatal(err)
				}
				msgs[n] = ipv4.Message{Buffers: [][]byte{bufs[n][:m]}, Addr: l.to}
				n++
			}
			legs = legs[n:]
			for off := 0; off < n; {
				k, err := s.pc.WriteBatch(msgs[off:n], 0)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					// A full socket buffer: the packets not sent are
					// not counted as sent; go on with the next tick.
					break
				}
				s.sent.Add(uint64(k))
				off += k
			}
		}
	}
}

// silence is µ-law silence.
var silence = func() (b [payload]byte) {
	for i := range b {
		b[i] = 0xFF
	}
	return
}()

// read counts every packet the side's RTP socket reads until it closes:
// G.711 µ-law of 20 ms, from a port of vnum's that belongs to one of the
// side's legs, always with the SSRC that leg first heard.
func (s *side) read() {
	msgs := make([]ipv4.Message, batchMax)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	var h rtp.Header
	for {
		n, err := s.pc.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for _, m := range msgs[:n] {
			b := m.Buffers[0][:m.N]
			hn, err := h.Unmarshal(b)
			if err != nil || h.PayloadType != rtp.PayloadTypePCMU || len(b)-hn != payload {
				s.bad.Add(1)
				continue
			}
			s.recv.Add(1)
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			v, ok := s.bySource.Load(ua.AddrPort())
			if !ok {
				continue // before the leg knew its port (the answer in flight)
			}
			l := v.(*leg)
			if !l.peer.CompareAndSwap(0, h.SSRC) && l.peer.Load() != h.SSRC {
				s.misrouted.Add(1)
			}
		}
	}
}

func run(o options) error {
	vnumAddr, err := netip.ParseAddrPort(o.vnum)
	if err != nil {
		return fmt.Errorf("-vnum: %w", err)
	}
	carrierAt, err := netip.ParseAddrPort(o.carrier)
	if err != nil {
		return fmt.Errorf("-carrier: %w", err)
	}
	callerIP, err := netip.ParseAddr(o.caller)
	if err != nil {
		return fmt.Errorf("-caller: %w", err)
	}
	callers, err := newSide(netip.AddrPortFrom(callerIP, 0), "loadgen")
	if err != nil {
		return err
	}
	defer callers.peer.Close()
	carrier, err := newSide(carrierAt, "carrier")
	if err != nil {
		return err
	}
	defer carrier.peer.Close()
	answer(carrier)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, s := range []*side{callers, carrier} {
		go s.send(ctx)
		go s.read()
	}
	dialogs := sipgo.NewDialogClientCache(callers.peer.Client, callers.peer.Contact)
	// vnum may hang up a caller (its media timeout, a drain): BYEs in the
	// callers' dialogs are answered.
	callers.peer.Server.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		}
	})
	callers.peer.Serve()
	if o.header {
		fmt.Printf("%-9s %10s %7s %7s %11s %11s %11s %11s %10s %7s %7s %9s %9s %13s %9s\n", "system",
			"concurrent", "up", "failed", "a sent", "b got", "b sent", "a got", "relayed %", "bad", "misrt",
			"relay cpu%", "softirq%", "ns/pkt (mach)", "KiB/call")
	}
	for _, level := range o.levels {
		r, err := runLevel(ctx, o, level, vnumAddr, dialogs, callers, carrier)
		if err != nil {
			return err
		}
		ns := "-"
		if r.nsPerPacket > 0 {
			ns = strconv.FormatFloat(r.nsPerPacket, 'f', 0, 64)
		}
		fmt.Printf("%-9s %10d %7d %7d %11d %11d %11d %11d %10s %7d %7d %9.1f %9.1f %13s %9.1f\n",
			o.label, level, r.up, r.failed, r.aSent, r.bGot, r.bSent, r.aGot, pct(r.aGot+r.bGot, r.aSent+r.bSent),
			r.bad, r.misrouted, r.vnumCPU, r.softirq, ns, r.kibPerCall)
	}
	return nil
}

// pct is got/sent as a percentage with two decimals, never rounded up to
// 100.00 unless nothing was lost.
func pct(got, sent uint64) string {
	if sent == 0 {
		return "-"
	}
	if got == sent {
		return "100.00"
	}
	p := float64(got) * 100 / float64(sent)
	return strconv.FormatFloat(min(p, 99.99), 'f', 2, 64)
}

// answer makes the carrier answer every INVITE at once with PCMU, and
// send media on the call from its ACK until the level stops.
func answer(c *side) {
	dialogs := sipgo.NewDialogServerCache(c.peer.Client, c.peer.Contact)
	c.peer.Server.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		to, err := sipua.MediaAddr(req.Body())
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			return
		}
		ds, err := dialogs.ReadInvite(req, tx)
		if err != nil {
			return
		}
		defer ds.Close()
		// RespondSDP returns once the ACK came.
		if err := ds.RespondSDP(c.peer.SDP(sipua.PCMU)); err != nil {
			return
		}
		c.start(&leg{to: net.UDPAddrFromAddrPort(to), ssrc: rand.Uint32() | 1}, to)
		<-ds.Context().Done()
	})
	c.peer.Server.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = dialogs.ReadAck(req, tx) })
	c.peer.Server.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		}
	})
	c.peer.Serve()
}

type result struct {
	up, failed                    int
	aSent, bGot, bSent, aGot      uint64
	bad, misrouted                uint64
	vnumCPU, softirq, nsPerPacket float64
	kibPerCall                    float64 // the relay's resident memory per call up
}

func runLevel(ctx context.Context, o options, level int, vnum netip.AddrPort, dialogs *sipgo.DialogClientCache,
	callers, carrier *side) (result, error) {
	base := [...]uint64{callers.sent.Load(), carrier.recv.Load(), carrier.sent.Load(), callers.recv.Load(),
		callers.bad.Load() + carrier.bad.Load(), callers.misrouted.Load() + carrier.misrouted.Load()}
	idle := o.idleKiB
	if idle <= 0 {
		idle = rssKiB(o.pid)
	}
	var (
		r        result
		mu       sync.Mutex
		sessions []*sipgo.DialogClientSession
		wg       sync.WaitGroup
	)
	uri := sip.Uri{Scheme: "sip", User: o.dial, Host: vnum.Addr().String(), Port: int(vnum.Port())}
	t := time.NewTicker(time.Second / time.Duration(o.rate))
	for range level {
		<-t.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := place(ctx, dialogs, uri, callers)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.failed++
				if r.failed <= 3 {
					fmt.Fprintln(os.Stderr, "loadgen: call failed:", err)
				}
				return
			}
			sessions = append(sessions, s)
		}()
	}
	t.Stop()
	wg.Wait()
	r.up = len(sessions)

	cpu0, err := sample(o.pid)
	if err != nil {
		return r, err
	}
	got0 := callers.recv.Load() + carrier.recv.Load()
	time.Sleep(o.hold)
	cpu1, err := sample(o.pid)
	if err != nil {
		return r, err
	}
	got := callers.recv.Load() + carrier.recv.Load() - got0
	if r.up > 0 && idle > 0 {
		r.kibPerCall = float64(rssKiB(o.pid)-idle) / float64(r.up)
	}
	wall := cpu1.at.Sub(cpu0.at).Seconds()
	r.vnumCPU = 100 * float64(cpu1.vnum-cpu0.vnum) / clkTck / wall
	r.softirq = 100 * float64(cpu1.softirq-cpu0.softirq) / clkTck / wall
	if got > 0 {
		// Signed: the generator's own time (from its /proc/self/stat)
		// and the machine's (ticks sampled in /proc/stat) are counted
		// apart, and with little else running its own may come out the
		// larger; that is shown as "-", not as a wrapped-around figure.
		machine := float64(int64(cpu1.busy-cpu0.busy)-int64(cpu1.self-cpu0.self)) / clkTck
		r.nsPerPacket = machine * 1e9 / float64(got)
	}

	// Stop the media, let what is in flight arrive, then hang up.
	callers.stopAll()
	carrier.stopAll()
	time.Sleep(300 * time.Millisecond)
	r.aSent, r.bGot = callers.sent.Load()-base[0], carrier.recv.Load()-base[1]
	r.bSent, r.aGot = carrier.sent.Load()-base[2], callers.recv.Load()-base[3]
	r.bad = callers.bad.Load() + carrier.bad.Load() - base[4]
	r.misrouted = callers.misrouted.Load() + carrier.misrouted.Load() - base[5]
	sem := make(chan struct{}, 64)
	for _, s := range sessions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_ = s.Bye(bctx)
			_ = s.Close()
		}()
	}
	wg.Wait()
	return r, nil
}

// place makes one call: INVITE with the callers' SDP, the answer, the ACK,
// and the caller's media from then on.
func place(ctx context.Context, dialogs *sipgo.DialogClientCache, uri sip.Uri, callers *side) (*sipgo.DialogClientSession, error) {
	ctx, cancel := context.WithTimeout(ctx, 32*time.Second)
	defer cancel()
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "loadgen", Host: callers.peer.Addr.Addr().String()},
		Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	s, err := dialogs.Invite(ctx, uri, callers.peer.SDP(sipua.PCMU), from, sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		return nil, err
	}
	if err := s.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		_ = s.Close()
		return nil, err
	}
	to, err := sipua.MediaAddr(s.InviteResponse.Body())
	if err != nil {
		_ = s.Bye(ctx)
		_ = s.Close()
		return nil, err
	}
	if err := s.Ack(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	callers.start(&leg{to: net.UDPAddrFromAddrPort(to), ssrc: rand.Uint32() &^ 1}, to)
	return s, nil
}

// clkTck is the kernel's USER_HZ, the unit of /proc's CPU times (100 on
// every Linux architecture Go runs on).
const clkTck = 100

// cpuSample is a moment's CPU counters, in clock ticks.
type cpuSample struct {
	at                        time.Time
	vnum, self, busy, softirq uint64
}

func sample(pid int) (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	var err error
	if pid > 0 {
		if s.vnum, err = procCPU(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
			return s, err
		}
	}
	if s.self, err = procCPU("/proc/self/stat"); err != nil {
		return s, err
	}
	f, err := os.Open("/proc/stat")
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return s, errors.New("/proc/stat: empty")
	}
	// cpu user nice system idle iowait irq softirq steal ...
	fields := strings.Fields(sc.Text())
	for i, v := range fields[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("/proc/stat: %w", err)
		}
		switch i {
		case 3, 4: // idle, iowait
		case 6:
			s.softirq = n
			s.busy += n
		case 8, 9: // guest time is already in user
		default:
			s.busy += n
		}
	}
	return s, nil
}

// rssKiB is a process's resident set in KiB (0 when unknown).
func rssKiB(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return n
		}
	}
	return 0
}

// procCPU is a process's user + system time from its stat file.
func procCPU(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields count from its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: no ')'", path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: short", path)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return u + st, nil
}
