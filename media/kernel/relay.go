// Package kernel relays the RTP of calls inside the Linux kernel: an eBPF
// program on the interface that carries vnum's media address forwards the
// packets of each flow vnum installs, as vnum's user-space relay would
// have, without waking vnum for them.
//
// A flow is one direction of a call: the packets that arrive at one leg's
// relay port from the peer that leg learnt leave from the other leg's
// relay port to the other peer, their payload type mapped as the legs
// negotiated, the IP and UDP checksums fixed, counted (packets, bytes,
// last seen). Everything else goes up the stack to vnum's sockets as it
// came: packets of no flow, RTCP, packets that are not plain RTP. The
// package knows nothing of calls or SIP: package media installs and
// removes flows.
//
// IPv4 only: a flow between IPv6 addresses cannot be installed.
package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

var (
	// ErrNotIPv4 means a flow or the media address is not IPv4.
	ErrNotIPv4 = errors.New("kernel relay: IPv4 only")
	// ErrTooManyPT means a flow maps more payload types than the
	// program rewrites (MaxPT).
	ErrTooManyPT = errors.New("kernel relay: too many payload types to rewrite")
	// ErrNoFlow means no flow of that key is installed.
	ErrNoFlow = errors.New("kernel relay: no such flow")
	// ErrClosed means the relay has been closed.
	ErrClosed = errors.New("kernel relay: closed")
)

// MaxPT is how many payload types one flow rewrites: the audio codec's
// and telephone-event's, the two a call's legs may number differently.
const MaxPT = 2

// DefaultMaxFlows is the size of the flow table when Options leave it 0.
const DefaultMaxFlows = 4096

// aliveFor is how long the program forwards after vnum last said it is
// alive; heartbeat is how often vnum says it.
const (
	aliveFor  = 5 * time.Second
	heartbeat = time.Second
)

// Attach says how the program is attached to the interface.
type Attach int

const (
	// AttachAuto uses TCX where the kernel has it (Linux 6.6), a cls_bpf
	// filter on a clsact qdisc otherwise.
	AttachAuto Attach = iota
	// AttachTCX attaches with TCX only: the attachment lives as long as
	// the process holds it.
	AttachTCX
	// AttachTC attaches a cls_bpf filter (direct action) to the clsact
	// qdisc's ingress, which older kernels have.
	AttachTC
)

// String returns "auto", "tcx" or "tc".
func (a Attach) String() string {
	switch a {
	case AttachTCX:
		return "tcx"
	case AttachTC:
		return "tc"
	}
	return "auto"
}

// Options tune Open.
type Options struct {
	// MaxFlows is the size of the flow table (DefaultMaxFlows when 0): a
	// call has two flows, one per direction.
	MaxFlows int
	// Attach chooses how the program is attached (AttachAuto when zero).
	Attach Attach
}

// PT maps one payload type to another.
type PT struct {
	From, To uint8
}

// Key names one direction of a call's media as packets arrive: at Local,
// a leg's relay port, from Peer, the source that leg learnt.
type Key struct {
	Local, Peer netip.AddrPort
}

// Flow is one direction of a call's media as the kernel relays it.
type Flow struct {
	Key
	// From is the port the packets leave from (the other leg's relay
	// port), To the other leg's peer.
	From, To netip.AddrPort
	// PT lists the payload types rewritten (at most MaxPT); others pass
	// unchanged. The marker bit is kept.
	PT []PT
}

// Counters are what the program counted of one flow.
type Counters struct {
	// Packets and Bytes (RTP: UDP payload) forwarded by the program.
	Packets, Bytes uint64
	// Idle is how long before the read the last packet was forwarded;
	// meaningless while Packets is 0.
	Idle time.Duration
	// Forwarding reports that the handover is over: the program forwards
	// the flow's packets itself, none go up to the socket any more.
	Forwarding bool
}

// Stats are the program's counts of what it did, every flow together.
type Stats struct {
	// ForwardedFIB were forwarded to the next hop a FIB lookup named;
	// ForwardedNeigh with the kernel resolving the next hop (a host that
	// does not forward); ForwardedLoopback on loopback.
	ForwardedFIB, ForwardedNeigh, ForwardedLoopback uint64
	// UpHandover went up to the socket while vnum relayed what the socket
	// held when the flow was installed; UpNotRTP were a flow's packets
	// not framed as plain RTP; UpRoute had no route the program takes
	// (a local address, a packet too big for the path); UpStale came
	// while vnum had not renewed its heartbeat.
	UpHandover, UpNotRTP, UpRoute, UpStale uint64
}

// Relay is the loaded and attached program with its flow table.
type Relay struct {
	ip      netip.Addr
	objs    relayObjects
	iface   net.Interface
	attach  Attach
	detach  func() error
	stop    chan struct{}
	beating sync.WaitGroup

	mu     sync.Mutex // serialises Close
	closed atomic.Bool
}

// Open loads the relay program and attaches it to the ingress of the
// interface that carries ip (loopback for 127.0.0.1). It needs CAP_BPF
// and CAP_NET_ADMIN (root), Linux 5.10 or later, and an Ethernet or
// loopback interface; each refusal is an error saying which.
func Open(ip netip.Addr, o Options) (*Relay, error) {
	ip = ip.Unmap()
	if !ip.Is4() {
		return nil, fmt.Errorf("%w: media address %s", ErrNotIPv4, ip)
	}
	iface, err := interfaceOf(ip)
	if err != nil {
		return nil, err
	}
	loopback := iface.Flags&net.FlagLoopback != 0
	if !loopback && len(iface.HardwareAddr) != 6 {
		return nil, fmt.Errorf("kernel relay: interface %s is neither Ethernet nor loopback", iface.Name)
	}
	if o.MaxFlows <= 0 {
		o.MaxFlows = DefaultMaxFlows
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. Without
	// the privilege to raise it, loading fails below, saying why.
	memlock := rlimit.RemoveMemlock()
	spec, err := loadRelay()
	if err != nil {
		return nil, fmt.Errorf("kernel relay: %w", err)
	}
	for _, m := range []string{relayMapFlows, relayMapAcks} {
		spec.Maps[m].MaxEntries = uint32(o.MaxFlows)
	}
	var lo uint32
	if loopback {
		lo = 1
	}
	for name, v := range map[string]uint32{relayVarCfgIfindex: uint32(iface.Index), relayVarCfgLoopback: lo, relayVarCfgTtl: defaultTTL()} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("kernel relay: set %s: %w", name, err)
		}
	}
	r := &Relay{ip: ip, iface: *iface, stop: make(chan struct{})}
	if err := spec.LoadAndAssign(&r.objs, nil); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("kernel relay: not permitted (needs root, or CAP_BPF and CAP_NET_ADMIN): %w", err)
		}
		if memlock != nil {
			err = errors.Join(err, memlock)
		}
		return nil, fmt.Errorf("kernel relay: load the program: %w", err)
	}
	if err := r.beat(); err != nil {
		return nil, errors.Join(fmt.Errorf("kernel relay: %w", err), r.objs.Close())
	}
	if r.attach, r.detach, err = attach(r.objs.VnumRelay, iface.Index, o.Attach); err != nil {
		return nil, errors.Join(fmt.Errorf("kernel relay: attach to %s: %w", iface.Name, err), r.objs.Close())
	}
	r.beating.Add(1)
	go r.heartbeat()
	return r, nil
}

// Addr returns the media address the relay was opened for: flows relay
// packets that arrive at it.
func (r *Relay) Addr() netip.Addr {
	return r.ip
}

// Interface returns the name of the interface the program is attached to.
func (r *Relay) Interface() string {
	return r.iface.Name
}

// Attachment returns how the program is attached: AttachTCX or AttachTC.
func (r *Relay) Attachment() Attach {
	return r.attach
}

// Attached returns the ids of the programs attached to the TC ingress of
// the interface named ifname (TCX and cls_bpf), vnum's or others': an
// operator's or a test's check of what a relay left behind.
func Attached(ifname string) ([]uint32, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("kernel relay: %w", err)
	}
	return attached(ifi.Index)
}

// ProgramID returns the kernel's id of the loaded program (bpftool prog
// show id N), 0 if it cannot be read.
func (r *Relay) ProgramID() uint32 {
	info, err := r.objs.VnumRelay.Info()
	if err != nil {
		return 0
	}
	id, _ := info.ID()
	return uint32(id)
}

// RunStats returns how often the program ran and for how long in all,
// counted only while the kernel collects BPF statistics
// (kernel.bpf_stats_enabled, or ebpf.EnableStats).
func (r *Relay) RunStats() (runs uint64, runtime time.Duration, err error) {
	if r.closed.Load() {
		return 0, 0, ErrClosed
	}
	s, err := r.objs.VnumRelay.Stats()
	if err != nil {
		return 0, 0, fmt.Errorf("kernel relay: program stats: %w", err)
	}
	return s.RunCount, s.Runtime, nil
}

// Close detaches the program and frees its maps: the flows still
// installed stop at once, their packets going up to the sockets. It is
// idempotent; the other methods return ErrClosed afterwards, and must not
// run while it does.
func (r *Relay) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return nil
	}
	r.closed.Store(true)
	close(r.stop)
	r.beating.Wait()
	return errors.Join(r.detach(), r.objs.Close())
}

// heartbeat renews alive_until until Close.
func (r *Relay) heartbeat() {
	defer r.beating.Done()
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			// A failed renewal costs only speed: once the deadline
			// passes, the flows' packets go up to vnum's sockets.
			_ = r.beat()
		}
	}
}

func (r *Relay) beat() error {
	return r.objs.AliveUntil.Update(uint32(0), uint64(monotonic()+aliveFor), ebpf.UpdateAny)
}

// Install adds f to the flow table, or replaces the flow of its key. The
// flow starts in handover: its packets still go up to the socket until
// Ack names the last one the program sent up, so that the packets the
// socket held when f was installed leave first. The caller keeps
// relaying (and acknowledging) what it reads until Counters says the flow
// is Forwarding.
func (r *Relay) Install(f Flow) error {
	if r.closed.Load() {
		return ErrClosed
	}
	k, err := key(f.Key)
	if err != nil {
		return err
	}
	if !f.From.Addr().Unmap().Is4() || !f.To.Addr().Unmap().Is4() {
		return fmt.Errorf("%w: flow from %s to %s", ErrNotIPv4, f.From, f.To)
	}
	if len(f.PT) > MaxPT {
		return fmt.Errorf("%w: %d", ErrTooManyPT, len(f.PT))
	}
	v := relayFlow{
		OutSrcIp:   addr4(f.From.Addr()),
		OutDstIp:   addr4(f.To.Addr()),
		OutSrcPort: port(f.From.Port()),
		OutDstPort: port(f.To.Port()),
		PtFrom:     [MaxPT]uint8{0xff, 0xff},
		State:      flowHandover,
	}
	for i, pt := range f.PT {
		v.PtFrom[i], v.PtTo[i] = pt.From&0x7f, pt.To&0x7f
	}
	// The flow's ack slot exists from now until Remove, so that an Ack
	// that comes after Remove finds none and leaves none behind.
	if err := r.objs.Acks.Update(k, relayRtpId{}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("kernel relay: install: %w", err)
	}
	if err := r.objs.Flows.Update(k, v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("kernel relay: install: %w", err)
	}
	return nil
}

// The states of a flow (relay.c).
const (
	flowHandover = 1
	flowForward  = 2
)

// Ack tells the program that the RTP packet whose header starts hdr (12
// bytes at least) has been relayed in user space: while the flow is in
// handover, the program forwards a packet itself only once the last
// packet it sent up is acknowledged. It returns ErrNoFlow when the flow
// has been removed meanwhile.
func (r *Relay) Ack(k Key, hdr []byte) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if len(hdr) < 12 {
		return fmt.Errorf("kernel relay: ack: %d bytes of RTP header", len(hdr))
	}
	kk, err := key(k)
	if err != nil {
		return err
	}
	id := relayRtpId{
		Seq:   nativeUint16(hdr[2:4]),
		Ts:    nativeUint32(hdr[4:8]),
		Ssrc:  nativeUint32(hdr[8:12]),
		Valid: 1,
	}
	err = r.objs.Acks.Update(kk, id, ebpf.UpdateExist)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return ErrNoFlow
	}
	if err != nil {
		return fmt.Errorf("kernel relay: ack: %w", err)
	}
	return nil
}

// Remove deletes the flow of k and returns its last counters: packets
// that arrive afterwards go up to the socket. It returns ErrNoFlow when
// no such flow is installed.
func (r *Relay) Remove(k Key) (Counters, error) {
	if r.closed.Load() {
		return Counters{}, ErrClosed
	}
	kk, err := key(k)
	if err != nil {
		return Counters{}, err
	}
	var v relayFlow
	err = r.objs.Flows.LookupAndDelete(kk, &v)
	if errors.Is(err, ebpf.ErrNotSupported) {
		// Before Linux 5.14 a hash map cannot look up and delete at
		// once: a packet forwarded between the two goes uncounted.
		if err = r.objs.Flows.Lookup(kk, &v); err == nil {
			err = r.objs.Flows.Delete(kk)
		}
	}
	if aerr := r.objs.Acks.Delete(kk); aerr != nil && !errors.Is(aerr, ebpf.ErrKeyNotExist) && err == nil {
		err = aerr
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return Counters{}, ErrNoFlow
	}
	if err != nil {
		return Counters{}, fmt.Errorf("kernel relay: remove: %w", err)
	}
	return counters(v, monotonic()), nil
}

// batch is how many flows one system call reads.
const batch = 256

// Counters calls fn with the counters of every installed flow, read a
// batch of flows per system call (one walk over the table where the
// kernel cannot read in batches, before 5.6).
func (r *Relay) Counters(fn func(Key, Counters)) error {
	if r.closed.Load() {
		return ErrClosed
	}
	now := monotonic()
	keys := make([]relayFlowKey, batch)
	vals := make([]relayFlow, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := r.objs.Flows.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(keyOf(keys[i]), counters(vals[i], now))
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return r.walk(fn, now)
		case err != nil:
			return fmt.Errorf("kernel relay: read counters: %w", err)
		}
	}
}

func (r *Relay) walk(fn func(Key, Counters), now time.Duration) error {
	var k relayFlowKey
	var v relayFlow
	it := r.objs.Flows.Iterate()
	for it.Next(&k, &v) {
		fn(keyOf(k), counters(v, now))
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("kernel relay: read counters: %w", err)
	}
	return nil
}

// Len returns how many flows are installed.
func (r *Relay) Len() (int, error) {
	n := 0
	err := r.Counters(func(Key, Counters) { n++ })
	return n, err
}

// Stats returns what the program did so far, every flow and CPU together.
func (r *Relay) Stats() (Stats, error) {
	if r.closed.Load() {
		return Stats{}, ErrClosed
	}
	var s Stats
	fields := []*uint64{&s.ForwardedFIB, &s.ForwardedNeigh, &s.ForwardedLoopback,
		&s.UpHandover, &s.UpNotRTP, &s.UpRoute, &s.UpStale}
	for i, p := range fields {
		var perCPU []uint64
		if err := r.objs.Stats.Lookup(uint32(i), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("kernel relay: stats: %w", err)
		}
		for _, v := range perCPU {
			*p += v
		}
	}
	return s, nil
}

func counters(v relayFlow, now time.Duration) Counters {
	c := Counters{Packets: v.Packets, Bytes: v.Bytes, Forwarding: v.State == flowForward}
	if v.Packets > 0 && now > time.Duration(v.LastSeen) {
		c.Idle = now - time.Duration(v.LastSeen)
	}
	return c
}

// defaultTTL is the TTL of the packets vnum's sockets send
// (net.ipv4.ip_default_ttl of the network namespace), which the packets
// the program forwards leave with too, as if vnum had sent them.
func defaultTTL() uint32 {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_default_ttl")
	if err != nil {
		return 64
	}
	ttl, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || ttl < 1 || ttl > 255 {
		return 64
	}
	return uint32(ttl)
}

// interfaceOf returns the interface that carries ip.
func interfaceOf(ip netip.Addr) (*net.Interface, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("kernel relay: list interfaces: %w", err)
	}
	var lo *net.Interface
	for i := range ifaces {
		addrs, err := ifaces[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if got, ok := netip.AddrFromSlice(n.IP); ok && got.Unmap() == ip {
					return &ifaces[i], nil
				}
			}
		}
		if ifaces[i].Flags&net.FlagLoopback != 0 {
			lo = &ifaces[i]
		}
	}
	// Every 127.0.0.0/8 address is loopback's, not only the one it lists.
	if ip.IsLoopback() && lo != nil {
		return lo, nil
	}
	return nil, fmt.Errorf("kernel relay: no interface carries %s", ip)
}
