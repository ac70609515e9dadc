package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/internal/testenv"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/media/kernel"
	"github.com/vnum/vnum/sip/sipua"
)

// kernelRelayLoads reports whether this host lets the kernel relay load
// on loopback (root, a recent kernel).
func kernelRelayLoads(t *testing.T) bool {
	t.Helper()
	r, err := kernel.Open(netip.MustParseAddr("127.0.0.1"), kernel.Options{})
	if err != nil {
		t.Logf("the kernel relay does not load here: %v", err)
		return false
	}
	require.NoError(t, r.Close())
	return true
}

// kernelServeConfig is a node that places no call, with media.kernel
// set to mode.
func kernelServeConfig(t *testing.T, mode string) *config.Config {
	t.Helper()
	c := adminConfig(t)
	c.SIP.Listen = []string{"udp://127.0.0.1:0"}
	c.Trunk.Outbound = "sip:127.0.0.1:9;transport=udp" // no call is placed
	c.Trunk.Keepalive = 0
	c.Media.Kernel = mode
	return c
}

// serveFor runs serve in process on c until it is up, then stops it, and
// returns its log.
func serveFor(t *testing.T, c *config.Config) string {
	t.Helper()
	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up := make(chan struct{})
	served := make(chan error, 1)
	go func() { served <- serve(ctx, c, slog.New(slog.NewJSONHandler(&logs, nil)), func(*node) { close(up) }) }()
	select {
	case <-up:
	case err := <-served:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not come up")
	}
	cancel()
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	return logs.String()
}

// TestServeLoadsKernelRelay: where the host allows, media.kernel on and
// auto load the kernel relay at start and say so once, naming the
// program, which is detached once serve has stopped; off does not load
// it.
func TestServeLoadsKernelRelay(t *testing.T) {
	if !kernelRelayLoads(t) {
		if testenv.Require("KERNEL_RELAY") {
			t.Fatalf("kernel relay required (%s=1)", testenv.RequireVar("KERNEL_RELAY"))
		}
		t.Skip("the kernel relay does not load here; TestServeWithoutKernelRelay covers this host")
	}
	for _, mode := range []string{config.KernelOn, config.KernelAuto} {
		t.Run(mode, func(t *testing.T) {
			logs := serveFor(t, kernelServeConfig(t, mode))
			require.Equal(t, 1, strings.Count(logs, `"msg":"rtp relayed in the kernel"`), logs)
			require.Equal(t, "lo", logField(t, logs, "rtp relayed in the kernel", "interface"))
			id := uint32(logNumber(t, logs, "rtp relayed in the kernel", "program_id"))
			require.NotZero(t, id)
			ids, err := kernel.Attached("lo")
			require.NoError(t, err)
			require.NotContains(t, ids, id, "program %d left on lo after serve stopped", id)
		})
	}
	logs := serveFor(t, kernelServeConfig(t, config.KernelOff))
	require.Contains(t, logs, `"msg":"rtp relayed in user space","media.kernel":"off"`)
	require.NotContains(t, logs, "rtp relayed in the kernel")
}

// logNumber is logField for a number.
func logNumber(t *testing.T, logs, msg, field string) float64 {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(l), &line) == nil && line["msg"] == msg {
			v, ok := line[field].(float64)
			require.True(t, ok, "%s has no number %s: %s", msg, field, l)
			return v
		}
	}
	t.Fatalf("no %q line in the log:\n%s", msg, logs)
	return 0
}

// TestServeWithoutKernelRelay: where the kernel refuses the relay (here
// a serve without the privilege: in a user namespace of its own when the
// tests run as root), media.kernel auto serves with RTP in user space and
// says so once, and on refuses to start, in one line saying why, before
// it touches the store.
func TestServeWithoutKernelRelay(t *testing.T) {
	if os.Getenv(kernelChildVar) != "" {
		t.Skip("the child's own run")
	}
	on := kernelServeConfig(t, config.KernelOn)
	stderr, err := serveUnprivileged(t, on, false)
	require.Error(t, err, "serve started with media.kernel on and no kernel relay: %s", stderr)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	require.Len(t, lines, 1, stderr)
	t.Log(lines[0])
	require.True(t, strings.HasPrefix(lines[0], "vnum: media.kernel: on, but the kernel cannot relay RTP here: "), stderr)
	require.NoFileExists(t, on.Store.DSN, "refused before the store was touched")

	stderr, err = serveUnprivileged(t, kernelServeConfig(t, config.KernelAuto), true)
	require.NoError(t, err, stderr)
	require.Equal(t, 1, strings.Count(stderr, "rtp relayed in user space: the kernel cannot relay it here"), stderr)
	require.Contains(t, stderr, `"msg":"vnum serving"`)
	require.NotContains(t, stderr, "rtp relayed in the kernel")
}

// kernelChildVar runs TestKernelChild as `vnum serve` (see
// serveUnprivileged).
const kernelChildVar = testenv.Prefix + "KERNEL_CHILD"

// serveUnprivileged runs `vnum serve` on c where the kernel relay cannot
// load: this test binary again, in a user namespace of its own (no
// CAP_BPF where it counts) when the tests run as root, as it is
// otherwise. With stop, serve is stopped (SIGTERM) once it serves. It
// returns serve's stderr (its log and its refusal).
func serveUnprivileged(t *testing.T, c *config.Config, stop bool) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKernelChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), kernelChildVar+"=1",
		"VNUM_SIP_LISTEN="+strings.Join(c.SIP.Listen, ","), "VNUM_ADMIN_LISTEN="+c.Admin.Listen,
		"VNUM_ADMIN_TOKEN="+c.Admin.Token, "VNUM_TRUNK_OUTBOUND="+c.Trunk.Outbound, "VNUM_TRUNK_KEEPALIVE=0s",
		"VNUM_STORE_DSN="+c.Store.DSN, "VNUM_MEDIA_KERNEL="+c.Media.Kernel)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		}
	}
	errPipe, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var all strings.Builder
	lines := bufio.NewScanner(errPipe)
	for lines.Scan() {
		all.WriteString(lines.Text() + "\n")
		if stop && strings.Contains(lines.Text(), `"msg":"vnum serving"`) {
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		}
	}
	_, _ = io.Copy(io.Discard, errPipe)
	err = cmd.Wait()
	return all.String(), err
}

// TestKernelChild is `vnum serve` for serveUnprivileged; it does nothing
// in a test run of its own.
func TestKernelChild(t *testing.T) {
	if os.Getenv(kernelChildVar) == "" {
		t.Skip("run by TestServeWithoutKernelRelay")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	dir := filepath.Dir(os.Getenv("VNUM_STORE_DSN"))
	require.DirExists(t, dir)
	if err := execute(ctx, newRootCmd(), []string{"serve"}, os.Stdout, os.Stderr); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// TestCallThroughKernelRelay: a courier's call over the trunk to the
// consignee, on a node whose ports use the kernel relay (as serve wires
// them with media.kernel): once both parties talk, their audio crosses
// in the kernel both ways, in /metrics as path="kernel", while vnum's
// user-space count stands still; the call's end leaves no flow.
func TestCallThroughKernelRelay(t *testing.T) {
	r, err := kernel.Open(netip.MustParseAddr("127.0.0.1"), kernel.Options{})
	if err != nil {
		if testenv.Require("KERNEL_RELAY") {
			t.Fatalf("kernel relay required (%s=1): %v", testenv.RequireVar("KERNEL_RELAY"), err)
		}
		t.Skipf("the kernel relay does not load here: %v", err)
	}
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	useTempStore(t)
	carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
	require.NoError(t, err)
	t.Cleanup(carrier.Close)
	c := config.Default()
	c.SIP.Listen = []string{"udp://127.0.0.1:0"}
	c.Store.DSN = os.Getenv("VNUM_STORE_DSN")
	c.Trunk.Outbound = "sip:" + carrier.Addr.String() + ";transport=udp"
	c.Trunk.InboundCIDRs = []string{"127.0.0.0/8"}
	require.NoError(t, c.Validate())
	ports, err := media.NewPorts(c.Media.IP, 0, 0)
	require.NoError(t, err)
	stop, err := ports.UseKernel(r, nil)
	require.NoError(t, err)
	t.Cleanup(stop)
	n, err := startNodeWith(context.Background(), c, slog.New(slog.DiscardHandler), true, ports)
	require.NoError(t, err)
	t.Cleanup(func() { n.stop(context.Background()) })
	vnum := netip.MustParseAddrPort(n.sip.Addr("udp"))

	b := shippedBinding(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	courier, err := sipua.NewSoftphone("13700137000", "", nil)
	require.NoError(t, err)
	t.Cleanup(courier.Close)
	d, err := courier.Call(ctx, vnum, b.Host+"-"+b.Extension)
	require.NoError(t, err)
	legA, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	inv, err := carrier.NextInvite(15 * time.Second)
	require.NoError(t, err)
	legB, err := sipua.MediaAddr(inv.Body())
	require.NoError(t, err)
	_, err = carrier.NextSession(15 * time.Second)
	require.NoError(t, err)

	// talk sends one packet each way and reads it on the other side.
	buf := make([]byte, 1500)
	talk := func(seq uint16) (heardByB, heardByA bool) {
		for _, p := range []struct {
			from, to *net.UDPConn
			dst      netip.AddrPort
			ssrc     uint32
			heard    *bool
		}{{courier.RTP, carrier.RTP, legA, 0xA, &heardByB}, {carrier.RTP, courier.RTP, legB, 0xB, &heardByA}} {
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: p.ssrc},
				Payload: make([]byte, 160)}
			raw, err := pkt.Marshal()
			require.NoError(t, err)
			_, err = p.from.WriteToUDPAddrPort(raw, p.dst)
			require.NoError(t, err)
			require.NoError(t, p.to.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
			for {
				k, _, err := p.to.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				var got rtp.Packet
				if got.Unmarshal(buf[:k]) == nil && got.SSRC == p.ssrc && got.SequenceNumber == seq {
					*p.heard = true
					break
				}
			}
		}
		return heardByB, heardByA
	}
	seq := uint16(0)
	require.Eventually(t, func() bool {
		seq++
		talk(seq)
		return ports.RelayCounts().RelayedKernel > 0
	}, 10*time.Second, 20*time.Millisecond, "the call's audio never went through the kernel")
	// The handover is over once a poll has seen both flows forwarding.
	time.Sleep(2 * media.KernelPoll)
	before := ports.RelayCounts()
	const count = 50
	for range count {
		seq++
		byB, byA := talk(seq)
		require.True(t, byB && byA, "packet %d crossed both ways", seq)
	}
	// The kernel's counts are read once a KernelPoll; a loaded machine
	// (CI runs every package at once, under the race detector) may read
	// them late.
	var byKernel, byVnum uint64
	if !assert.Eventually(t, func() bool {
		c := ports.RelayCounts()
		byKernel, byVnum = c.RelayedKernel-before.RelayedKernel, c.Relayed-before.Relayed
		return byKernel >= 2*count
	}, 10*media.KernelPoll, 10*time.Millisecond) {
		t.Fatalf("since the handover the kernel relayed %d packets and vnum %d; want %d by the kernel", byKernel, byVnum, 2*count)
	}
	require.Equal(t, before.Relayed, ports.RelayCounts().Relayed, "vnum's sockets relayed none of them")

	url := startTestAdmin(t, func() *config.Config { a := config.Default(); a.Admin.Listen = "127.0.0.1:0"; return a }(), n.store, n.stats())
	_, body := get(t, url+"/metrics", "")
	require.Contains(t, body, `vnum_rtp_packets_relayed_total{path="kernel"} `)
	require.NotContains(t, body, `vnum_rtp_packets_relayed_total{path="kernel"} 0`+"\n")

	// The carrier's RTCP still comes up to vnum, so its reports count
	// for leg b while the kernel relays the audio.
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0xB, Reports: []rtcp.ReceptionReport{
		{SSRC: 0xA, FractionLost: 3, TotalLost: 2, Jitter: 16},
	}}})
	require.NoError(t, err)
	_, err = carrier.RTP.WriteToUDPAddrPort(rr, netip.AddrPortFrom(legB.Addr(), legB.Port()+1))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, body := get(t, url+"/metrics", "")
		return strings.Contains(body, `vnum_rtcp_packets_lost_total{leg="b"} 2`+"\n")
	}, 10*time.Second, 20*time.Millisecond, "the carrier's RTCP report counts for leg b")

	require.NoError(t, d.Bye(ctx))
	require.Eventually(t, func() bool { return n.sip.ActiveCalls() == 0 && n.ports.InUse() == 0 }, 10*time.Second, 20*time.Millisecond)
	// The packets the kernel relayed left gaps in what vnum read: no
	// loss, none was lost.
	_, body = get(t, url+"/metrics", "")
	require.Contains(t, body, `vnum_rtp_packets_lost_total{leg="a"} 0`+"\n")
	require.Contains(t, body, `vnum_rtp_packets_lost_total{leg="b"} 0`+"\n")
	flows, err := r.Len()
	require.NoError(t, err)
	require.Zero(t, flows, "the call's end leaves no flow in the kernel")
}
