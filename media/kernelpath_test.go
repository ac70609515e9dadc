package media

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vnum/vnum/internal/testenv"
	"github.com/vnum/vnum/media/kernel"
)

// openKernelRelay opens the kernel relay on ip, or skips the test where
// the kernel refuses (no privilege, an old kernel);
// VNUMTEST_REQUIRE_KERNEL_RELAY=1 makes that a failure.
func openKernelRelay(t testing.TB, ip string, o kernel.Options) *kernel.Relay {
	t.Helper()
	r, err := kernel.Open(netip.MustParseAddr(ip), o)
	if err != nil {
		if testenv.Require("KERNEL_RELAY") {
			t.Fatalf("kernel relay required (%s=1): %v", testenv.RequireVar("KERNEL_RELAY"), err)
		}
		t.Skipf("kernel relay unavailable here (run as root on Linux 5.10+; %s=1 fails instead): %v", testenv.RequireVar("KERNEL_RELAY"), err)
	}
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// kernelPorts returns ports on 127.0.0.1 whose streams use the kernel
// relay r; at cleanup the test checks that no flow is left in it.
func kernelPorts(t testing.TB, r *kernel.Relay) *Ports {
	t.Helper()
	return kernelPortsOn(t, r, "127.0.0.1")
}

// kernelPortsOn is kernelPorts on ip.
func kernelPortsOn(t testing.TB, r *kernel.Relay, ip string) *Ports {
	t.Helper()
	ports, err := NewPorts(ip, 0, 0)
	require.NoError(t, err)
	stop, err := ports.UseKernel(r, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		defer stop()
		n, err := r.Len()
		if errors.Is(err, kernel.ErrClosed) {
			return // the test closed the relay itself
		}
		require.NoError(t, err)
		require.Zero(t, n, "flows left in the kernel after every stream closed")
	})
	return ports
}

// relayBoth relays a and b to each other, as a bridged call does.
func relayBoth(t testing.TB, a, b *Stream) {
	t.Helper()
	require.NoError(t, Relay(a, b))
	require.NoError(t, Relay(b, a))
}

// numbered is an RTP packet of ssrc numbered seq, of payload type pt.
func numbered(ssrc uint32, pt uint8, seq uint16) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * frameSamples, SSRC: ssrc},
		Payload: make([]byte, frameSamples)}
}

// waitInKernel sends packets from both peers (each packet relayed in user
// space is received and checked) until both streams' RTP is in the
// kernel, its handover over.
func waitInKernel(t testing.TB, caller, callee *peer, a, b *Stream, r *kernel.Relay) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for seq := uint16(0); !a.InKernel() || !b.InKernel(); seq++ {
		if !time.Now().Before(deadline) {
			s, err := r.Stats()
			require.NoError(t, err)
			n, err := r.Len()
			require.NoError(t, err)
			t.Fatalf("the call's RTP did not move to the kernel: %d flows, %+v, %+v", n, s, a.kflow.Load())
		}
		caller.sendRTP(a.Socket().RTPAddr(), numbered(0xA, 0, seq))
		callee.recvRTP(time.Second)
		callee.sendRTP(b.Socket().RTPAddr(), numbered(0xB, 8, seq))
		caller.recvRTP(time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	// What the kernel relayed of those is accounted now, not at the next
	// KernelPoll: the counts a test takes next include all of them.
	a.sock.pool.kernelPath().poll()
}

// TestKernelRelaysBridgedCall: once both legs relay to each other and
// know their peers, the kernel relays the call's RTP both ways with the
// rewrites of the user-space relay (telephone-event 101 ↔ 96, audio
// unchanged, marker kept) while vnum's sockets see none of it: the
// user-space counters stand still, the kernel's move, and so do the
// streams' LastRTP (the media timeout). RTCP stays in user space. When
// the streams close no flow is left.
func TestKernelRelaysBridgedCall(t *testing.T) {
	r := openKernelRelay(t, "127.0.0.1", kernel.Options{})
	ports := kernelPorts(t, r)
	clock := newTestClock()
	ports.SetClock(clock.Now)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, event101)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, event96)
	relayBoth(t, a, b)
	waitInKernel(t, caller, callee, a, b, r)

	before := ports.RelayCounts()
	lastA, lastB := a.LastRTP(), b.LastRTP()
	clock.Advance(time.Minute)
	const n = 50
	for i := range uint16(n) {
		caller.sendRTP(a.Socket().RTPAddr(), eventPacket(t, '5', 101, 160*uint32(i), 1000+i, i == 0, false))
		got := callee.recvRTP(time.Second)
		require.Equal(t, uint8(96), got.PayloadType, "telephone-event in leg B's type")
		require.Equal(t, i == 0, got.Marker)
		require.Equal(t, 1000+i, got.SequenceNumber, "sequence numbers pass as they are")

		callee.sendRTP(b.Socket().RTPAddr(), numbered(0xB, 0, 2000+i))
		buf, src := caller.recv(time.Second)
		require.NotNil(t, buf)
		require.Equal(t, a.Socket().RTPAddr(), src, "sent from leg A's port")
		var back rtp.Packet
		require.NoError(t, back.Unmarshal(buf))
		require.Equal(t, uint8(0), back.PayloadType)
		require.Equal(t, uint32(0xB), back.SSRC)
	}
	require.Eventually(t, func() bool { return ports.RelayCounts().RelayedKernel >= before.RelayedKernel+2*n },
		3*KernelPoll, 10*time.Millisecond, "the kernel's counts reach RelayCounts")
	after := ports.RelayCounts()
	require.Equal(t, before.Relayed, after.Relayed, "no packet went through vnum's sockets")
	require.Equal(t, before.Dropped, after.Dropped)
	require.Equal(t, before.RelayedKernel+2*n, after.RelayedKernel)
	require.Equal(t, after.Relayed+after.RelayedKernel+sum(after.Dropped), after.Received)
	require.True(t, a.LastRTP().After(lastA) && b.LastRTP().After(lastB), "packets the kernel relayed are the call's media")
	quiet, stop := a.Quiet(30 * time.Second)
	defer stop()
	select {
	case <-quiet:
		t.Fatal("media timeout while the kernel relays")
	default:
	}

	// RTCP is vnum's: relayed in user space, its source descriptions
	// scrubbed.
	callerRTCP, calleeRTCP := newPeer(t), newPeer(t)
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0xA}})
	require.NoError(t, err)
	callerRTCP.send(rtcpAddr(a), rr) // leg A learns where the caller's RTCP comes from
	require.Eventually(t, func() bool { return a.RTCPRemote() == callerRTCP.addr() }, time.Second, time.Millisecond)
	sr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.SenderReport{SSRC: 0xB}, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{
		{Source: 0xB, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "bob@10.0.0.9"}}}}}})
	require.NoError(t, err)
	calleeRTCP.send(rtcpAddr(b), sr)
	buf, _ := callerRTCP.recv(time.Second)
	require.NotNil(t, buf, "RTCP relayed")
	require.NotContains(t, string(buf), "bob@", "scrubbed by vnum: RTCP never goes through the kernel")
	require.True(t, a.InKernel() && b.InKernel())

	require.NoError(t, a.Close())
	n2, err := r.Len()
	require.NoError(t, err)
	require.Zero(t, n2, "closing one leg removes both directions' flows")
}

func sum(m map[DropReason]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestKernelHandoverKeepsOrder: a numbered stream sent in bursts across
// the moments its flows are installed (packets queue in vnum's socket
// while the kernel starts to take them) and removed again (leg A kept in
// user space, then let go, over and over) reaches the other peer whole
// and in order, both ways.
func TestKernelHandoverKeepsOrder(t *testing.T) {
	r := openKernelRelay(t, "127.0.0.1", kernel.Options{})
	ports := kernelPorts(t, r)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	for _, p := range []*peer{caller, callee} {
		require.NoError(t, p.conn.SetReadBuffer(4<<20))
	}
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
	relayBoth(t, a, b)

	const total, burst = 3000, 20
	var wg sync.WaitGroup
	got := make([][]uint16, 2)
	for i, p := range []*peer{callee, caller} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, maxPacket)
			for len(got[i]) < total {
				_ = p.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _, err := p.conn.ReadFromUDPAddrPort(buf)
				if err != nil || n < 12 {
					return
				}
				got[i] = append(got[i], binary.BigEndian.Uint16(buf[2:4]))
			}
		}()
	}
	rawA, rawB := make([][]byte, total), make([][]byte, total)
	for i := range total {
		var err error
		rawA[i], err = numbered(0xA, 0, uint16(i)).Marshal()
		require.NoError(t, err)
		rawB[i], err = numbered(0xB, 0, uint16(i)).Marshal()
		require.NoError(t, err)
	}
	for i := 0; i < total; i += burst {
		for j := i; j < min(i+burst, total); j++ {
			caller.send(a.Socket().RTPAddr(), rawA[j])
			callee.send(b.Socket().RTPAddr(), rawB[j])
		}
		if i/burst%10 == 9 {
			a.KeepInUserSpace(i/burst%20 == 9)
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	for i, dir := range []string{"caller → callee", "callee → caller"} {
		require.Len(t, got[i], total, "%s: every packet arrives", dir)
		for j, seq := range got[i] {
			require.EqualValues(t, j, seq, "%s: packet %d out of order", dir, j)
		}
	}
	require.Eventually(t, func() bool {
		rc := ports.RelayCounts()
		return rc.Relayed+rc.RelayedKernel == 2*total
	}, 3*KernelPoll, 10*time.Millisecond, "each packet relayed once, by one path: %+v", ports.RelayCounts())
	rc := ports.RelayCounts()
	require.NotZero(t, rc.RelayedKernel, "the kernel took over during the stream")
	s, err := r.Stats()
	require.NoError(t, err)
	t.Logf("kernel relayed %d, user space %d; %d packets went up during the handovers", rc.RelayedKernel, rc.Relayed, s.UpHandover)
}

// rtcpAddr is the address of s's RTCP socket.
func rtcpAddr(s *Stream) netip.AddrPort {
	return netip.AddrPortFrom(s.Socket().IP, uint16(s.Socket().Port+1))
}

// flows returns how many flows r holds.
func flows(t *testing.T, r *kernel.Relay) int {
	t.Helper()
	n, err := r.Len()
	require.NoError(t, err)
	return n
}

// TestKernelFlowFollowsTheCall: what needs vnum stays in user space (a
// call whose legs need PCMU ↔ PCMA, a stream kept in user space, a call
// relayed one way only), and a flow goes as soon as the call stops being
// one the kernel may relay: a re-offer moving a leg, a relay stopped.
func TestKernelFlowFollowsTheCall(t *testing.T) {
	r := openKernelRelay(t, "127.0.0.1", kernel.Options{})
	ports := kernelPorts(t, r)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	talk := func(a, b *Stream, n int) {
		t.Helper()
		for i := range n {
			caller.sendRTP(a.Socket().RTPAddr(), numbered(0xA, a.Audio().PT, uint16(i)))
			callee.recvRTP(time.Second)
			callee.sendRTP(b.Socket().RTPAddr(), numbered(0xB, b.Audio().PT, uint16(i)))
			caller.recvRTP(time.Second)
			time.Sleep(10 * time.Millisecond)
		}
	}
	stay := func(a, b *Stream, what string) {
		t.Helper()
		talk(a, b, 3*int(kernelRetry/(10*time.Millisecond)))
		require.Zero(t, flows(t, r), what)
		require.False(t, a.InKernel() || b.InKernel(), what)
	}

	t.Run("g711 conversion", func(t *testing.T) {
		a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
		b := newTestStream(t, ports, callee.addr(), pcmaCodec, nil)
		relayBoth(t, a, b)
		stay(a, b, "PCMU ↔ PCMA is converted in user space")
	})
	t.Run("one way", func(t *testing.T) {
		a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
		b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
		require.NoError(t, Relay(b, a)) // early media: the caller's packets are its own
		for i := range 30 {
			callee.sendRTP(b.Socket().RTPAddr(), numbered(0xB, 0, uint16(i)))
			caller.recvRTP(time.Second)
			time.Sleep(10 * time.Millisecond)
		}
		require.Zero(t, flows(t, r), "a call relayed one way is not bridged")
	})
	t.Run("kept in user space", func(t *testing.T) {
		a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
		b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
		a.KeepInUserSpace(true)
		relayBoth(t, a, b)
		talk(a, b, 3*int(kernelRetry/(10*time.Millisecond)))
		require.Eventually(t, b.InKernel, 3*KernelPoll, 10*time.Millisecond, "the other direction goes to the kernel")
		require.False(t, a.InKernel(), "the caller's packets stay with vnum")
		a.KeepInUserSpace(false)
		talk(a, b, 3*int(kernelRetry/(10*time.Millisecond)))
		require.Eventually(t, a.InKernel, 3*KernelPoll, 10*time.Millisecond)
		a.KeepInUserSpace(true)
		require.Equal(t, 1, flows(t, r), "kept in user space at once")
	})
	t.Run("re-offer and stop", func(t *testing.T) {
		a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
		b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
		relayBoth(t, a, b)
		talk(a, b, 3*int(kernelRetry/(10*time.Millisecond)))
		require.Eventually(t, func() bool { return a.InKernel() && b.InKernel() }, 3*KernelPoll, 10*time.Millisecond)

		// B moves (a re-INVITE names another address): both flows name
		// B, as source or destination.
		moved := newPeer(t)
		b.SetRemote(moved.addr())
		require.Zero(t, flows(t, r), "a re-offer removes the flows at once")
		callee = moved
		talk(a, b, 3*int(kernelRetry/(10*time.Millisecond)))
		require.Eventually(t, func() bool { return a.InKernel() && b.InKernel() }, 3*KernelPoll, 10*time.Millisecond,
			"the flows come back for the new address")

		b.StopRelay()
		require.Zero(t, flows(t, r), "a relay stopped: the call is no longer bridged both ways")
		require.False(t, a.InKernel() || b.InKernel())
	})
}

// TestKernelForeignFlood: while the kernel relays a call, a flood from a
// host outside the call to a relay port is neither forwarded nor learnt:
// it goes up to vnum's socket, which drops it as a foreign source, and
// the flows keep their peers.
func TestKernelForeignFlood(t *testing.T) {
	r := openKernelRelay(t, "127.0.0.1", kernel.Options{})
	ports := kernelPorts(t, r)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	attacker := newPeerAt(t, "127.0.0.2")
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
	relayBoth(t, a, b)
	waitInKernel(t, caller, callee, a, b, r)

	const flood = 2000
	for i := range flood {
		attacker.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, uint16(i)))
		attacker.sendRTP(b.Socket().RTPAddr(), ssrcPacket(attackerSSRC, uint16(i)))
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // no more than vnum's socket buffers hold
		}
	}
	caller.sendRTP(a.Socket().RTPAddr(), ssrcPacket(0xCA11, 1))
	require.Zero(t, recvSSRC(t, callee, 0xCA11), "the callee hears the caller and never the attacker")
	callee.sendRTP(b.Socket().RTPAddr(), ssrcPacket(0xCA1E, 1))
	require.Zero(t, recvSSRC(t, caller, 0xCA1E))
	requireNothing(t, attacker, "the attacker hears nothing")
	require.Eventually(t, func() bool { return ports.RelayCounts().Dropped[DropForeignSource] == 2*flood },
		5*time.Second, time.Millisecond, "every packet of the flood reaches vnum's socket and is dropped: %+v", ports.RelayCounts())
	require.Equal(t, caller.addr(), a.Remote())
	require.Equal(t, callee.addr(), b.Remote())
	require.True(t, a.InKernel() && b.InKernel(), "the flows stand")
	require.Eventually(t, func() bool { return ports.RelayCounts().RelayedKernel >= 2 }, 3*KernelPoll, 10*time.Millisecond)
	require.Less(t, ports.RelayCounts().RelayedKernel, uint64(flood), "the flood is not counted as relayed")
}

// BenchmarkRelayPath measures one direction of a bridged call on
// loopback relayed in user space and by the kernel: packets per second
// and the CPU the whole process spent per packet (user and system time),
// in windows of 32 packets so that no socket buffer overflows. "direct"
// sends from the sender straight to the receiver, no relay: its CPU per
// packet is the sender's and receiver's share, the same on both paths, so
// a path's figure less direct's is what relaying a packet costs there.
func BenchmarkRelayPath(bm *testing.B) {
	for _, path := range []string{"direct", "user", "kernel"} {
		bm.Run(path, func(bm *testing.B) {
			ports := newTestPorts(bm)
			var r *kernel.Relay
			if path == "kernel" {
				r = openKernelRelay(bm, "127.0.0.1", kernel.Options{})
				ports = kernelPorts(bm, r)
			}
			sender, receiver := newPeer(bm), newPeer(bm)
			a := newTestStream(bm, ports, sender.addr(), pcmuCodec, event101)
			b := newTestStream(bm, ports, receiver.addr(), pcmuCodec, event96)
			relayBoth(bm, a, b)
			if path == "kernel" {
				waitInKernel(bm, sender, receiver, a, b, r)
			}
			raw, err := numbered(1, 0, 1).Marshal()
			require.NoError(bm, err)
			to := a.Socket().RTPAddr()
			if path == "direct" {
				to = receiver.addr()
			}
			buf := make([]byte, maxPacket)
			const window = 32
			before := ports.RelayCounts()
			var runs0 uint64
			var run0 time.Duration
			if r != nil {
				// What the program itself costs, where the kernel lets us
				// count it.
				if stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME); err == nil {
					defer stats.Close()
					runs0, run0, err = r.RunStats()
					require.NoError(bm, err)
				}
			}
			bm.ReportAllocs()
			bm.ResetTimer()
			cpu0, start := processCPU(bm), time.Now()
			lost := 0
			for i := 0; i < bm.N; i += window {
				n := min(window, bm.N-i)
				for range n {
					if _, err := sender.conn.WriteToUDPAddrPort(raw, to); err != nil {
						bm.Fatal(err)
					}
				}
				for range n {
					_ = receiver.conn.SetReadDeadline(time.Now().Add(time.Second))
					if _, _, err := receiver.conn.ReadFromUDPAddrPort(buf); err != nil {
						lost++
					}
				}
			}
			cpu, wall := processCPU(bm)-cpu0, time.Since(start)
			bm.StopTimer()
			bm.ReportMetric(float64(bm.N)/wall.Seconds(), "pkts/s")
			bm.ReportMetric(float64(cpu.Nanoseconds())/float64(bm.N), "cpu-ns/pkt")
			bm.ReportMetric(float64(lost), "lost")
			if r != nil {
				require.Equal(bm, before.Relayed, ports.RelayCounts().Relayed, "the kernel relayed every packet")
				runs, run, err := r.RunStats()
				require.NoError(bm, err)
				if runs > runs0 {
					// It runs for every packet on loopback: the sender's it
					// forwards, and each packet again on its way in.
					bm.ReportMetric(float64(run-run0)/float64(bm.N), "prog-ns/pkt")
					bm.ReportMetric(float64(runs-runs0)/float64(bm.N), "prog-runs/pkt")
				}
			}
		})
	}
}

// processCPU is the user and system CPU time the process has used.
func processCPU(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestKernelWatchedKeysComeUp: a bridged stream that watches its peer's
// keys (the consignee's block key) keeps its audio in the kernel, while
// its telephone-event packets come up to the stream, which collects the
// key and relays the packets itself in the other leg's payload type.
func TestKernelWatchedKeysComeUp(t *testing.T) {
	r := openKernelRelay(t, "127.0.0.1", kernel.Options{})
	ports := kernelPorts(t, r)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, event101)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, event96)
	relayBoth(t, a, b)
	b.WatchKeys(true)
	waitInKernel(t, caller, callee, a, b, r)

	before := ports.RelayCounts()
	const n = 20
	for i := range uint16(n) {
		callee.sendRTP(b.Socket().RTPAddr(), numbered(0xB, 0, 3000+i))
		got := caller.recvRTP(time.Second)
		require.Equal(t, uint32(0xB), got.SSRC)
	}
	require.Eventually(t, func() bool { return ports.RelayCounts().RelayedKernel >= before.RelayedKernel+n },
		3*KernelPoll, 10*time.Millisecond, "the watched stream's audio goes through the kernel")
	for i, key := range "*9" {
		callee.sendRTP(b.Socket().RTPAddr(), eventPacket(t, key, 96, uint32(10000+1000*i), uint16(4000+i), true, true))
		got := caller.recvRTP(time.Second)
		require.Equal(t, uint8(101), got.PayloadType, "relayed in the caller's type")
		select {
		case d := <-b.Digits():
			require.Equal(t, key, d)
		case <-time.After(time.Second):
			t.Fatalf("the watched key %q did not come up", key)
		}
	}
	s, err := r.Stats()
	require.NoError(t, err)
	require.EqualValues(t, 2, s.UpWatched)
	require.True(t, b.InKernel(), "the audio is still the kernel's")
}

// rtpReaders counts the goroutines reading RTP (Stream.readRTP), once
// they run: one just started shows only its go statement's wrapper.
func rtpReaders() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "media.(*Stream).readRTP(")
}

// parked reports whether s's RTP reader is parked (Stream.park).
func parked(s *Stream) bool {
	s.lc.Lock()
	defer s.lc.Unlock()
	return s.rtpParked
}

// TestKernelParksIdleReaders: once the kernel relays a call, its RTP
// readers end (two goroutines fewer a call) and the audio still crosses
// both ways; whatever comes up to a parked socket starts its reader
// again: a stranger's packet (dropped as foreign, then the reader parks
// once more), watched keys, and the call's own audio when its flow is
// removed, relayed in user space whole and in order. A stream closed
// while parked leaves no goroutine and no flow.
func TestKernelParksIdleReaders(t *testing.T) {
	r := openKernelRelay(t, "127.0.0.1", kernel.Options{})
	ports := kernelPorts(t, r)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	attacker := newPeerAt(t, "127.0.0.2")
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, event101)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, event96)
	relayBoth(t, a, b)
	require.Eventually(t, func() bool { return rtpReaders() == 2 }, time.Second, time.Millisecond, "a reader a leg")
	waitInKernel(t, caller, callee, a, b, r)
	bothParked := func() bool { return parked(a) && parked(b) }
	require.Eventually(t, bothParked, parkIdle+3*KernelPoll, 10*time.Millisecond, "idle readers park")
	require.Eventually(t, func() bool { return rtpReaders() == 0 }, time.Second, 10*time.Millisecond,
		"the call's two RTP readers ended")

	before := ports.RelayCounts()
	for i := range uint16(20) {
		caller.sendRTP(a.Socket().RTPAddr(), numbered(0xA, 0, 100+i))
		require.Equal(t, 100+i, callee.recvRTP(time.Second).SequenceNumber)
		callee.sendRTP(b.Socket().RTPAddr(), numbered(0xB, 0, 200+i))
		require.Equal(t, 200+i, caller.recvRTP(time.Second).SequenceNumber)
	}
	require.Equal(t, before.Relayed, ports.RelayCounts().Relayed, "the kernel relays; vnum's sockets see nothing")
	require.True(t, bothParked(), "nothing came up to wake them")

	// A stranger's packet wakes leg A's reader, which drops it and parks
	// again.
	attacker.sendRTP(a.Socket().RTPAddr(), ssrcPacket(attackerSSRC, 1))
	require.Eventually(t, func() bool {
		return ports.RelayCounts().Dropped[DropForeignSource] == before.Dropped[DropForeignSource]+1
	},
		time.Second, time.Millisecond, "the woken reader drops the stranger's packet")
	requireNothing(t, callee, "the stranger's packet is not relayed")
	require.Eventually(t, bothParked, 2*parkIdle+KernelPoll, 10*time.Millisecond, "and parks again")

	// The caller's own NAT keepalive (a datagram that is no RTP, which
	// the kernel passes up) wakes the reader, which drops it and parks
	// again.
	notRTP := ports.RelayCounts().Dropped[DropNotRTP]
	caller.send(a.Socket().RTPAddr(), []byte{0})
	require.Eventually(t, func() bool { return ports.RelayCounts().Dropped[DropNotRTP] == notRTP+1 },
		time.Second, time.Millisecond, "the woken reader drops the keepalive")
	require.Eventually(t, bothParked, 2*parkIdle+KernelPoll, 10*time.Millisecond, "and parks again after a keepalive")

	// Keys watched on leg B: the kernel passes them up, a reader wakes
	// for them and finds the digit.
	b.WatchKeys(true)
	for i := uint16(0); ; i++ {
		require.Less(t, i, uint16(200), "leg B's flow did not come back with its keys watched")
		callee.sendRTP(b.Socket().RTPAddr(), numbered(0xB, 0, 300+i))
		caller.recvRTP(time.Second)
		if b.InKernel() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Eventually(t, func() bool { return parked(b) }, parkIdle+3*KernelPoll, 10*time.Millisecond)
	callee.sendRTP(b.Socket().RTPAddr(), eventPacket(t, '9', 96, 50000, 600, true, true))
	require.Equal(t, uint8(101), caller.recvRTP(time.Second).PayloadType)
	select {
	case d := <-b.Digits():
		require.Equal(t, '9', d)
	case <-time.After(time.Second):
		t.Fatal("the watched key did not come up to a parked stream")
	}

	// Leg A's flow removed while its reader is parked: the caller's audio
	// comes up to the socket and is relayed in user space, none lost.
	require.Eventually(t, func() bool { return parked(a) }, parkIdle+KernelPoll, 10*time.Millisecond)
	a.KeepInUserSpace(true)
	relayed := ports.RelayCounts().Relayed
	for i := range uint16(30) {
		caller.sendRTP(a.Socket().RTPAddr(), numbered(0xA, 0, 700+i))
	}
	for i := range uint16(30) {
		require.Equal(t, 700+i, callee.recvRTP(time.Second).SequenceNumber, "in order, none lost")
	}
	// At least: leg B's last key, relayed by its reader, may be counted
	// just after the count was read.
	require.GreaterOrEqual(t, ports.RelayCounts().Relayed, relayed+30, "relayed by vnum's reader")
	require.False(t, parked(a))

	// B is closed parked (its reader idle again), A with a reader.
	require.Eventually(t, func() bool { return parked(b) }, 2*parkIdle+KernelPoll, 10*time.Millisecond)
	require.NoError(t, b.Close())
	require.NoError(t, a.Close())
}
