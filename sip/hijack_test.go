package sip

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/sipua"
)

// The tests in this file play RTP hijacking ("RTP bleed") against whole
// calls: an attacker on a host of its own (127.0.0.2) who has found a
// call's relay ports sends RTP and RTCP to them, at each leg, before the
// party's first packet, while the parties talk and after they have been
// silent for longer than the learning window. The streams' clock is moved
// by the test (mediaClock), so no assertion waits on the wall clock.

const (
	callerSSRC   = 0xA11CE
	carrierSSRC  = 0xB0B
	attackerSSRC = 0xBAD
)

// mediaClock is the wall clock plus an offset the test moves forward: the
// streams' learning windows see time pass at once, while timers that
// compare with it (media.timeout) stay sane.
type mediaClock struct{ ahead atomic.Int64 }

func (c *mediaClock) Now() time.Time          { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *mediaClock) Advance(d time.Duration) { c.ahead.Add(int64(d)) }

// useMediaClock gives the env's streams a clock the test moves.
func useMediaClock(e *testEnv) *mediaClock {
	c := &mediaClock{}
	e.ports.SetClock(c.Now) // before the first call opens a port
	return c
}

// rtpTap reads a socket until the test ends and records what arrives:
// RTP packets by SSRC and sequence number, RTCP datagrams, and sources.
type rtpTap struct {
	mu   sync.Mutex
	seen map[uint32]map[uint16]bool
	rtcp int
	from map[netip.AddrPort]int
}

func newTap(t *testing.T, conn *net.UDPConn) *rtpTap {
	t.Helper()
	tp := &rtpTap{seen: map[uint32]map[uint16]bool{}, from: map[netip.AddrPort]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return
				}
				if strings.Contains(err.Error(), "closed") {
					return
				}
				continue
			}
			tp.mu.Lock()
			tp.from[netip.AddrPortFrom(src.Addr().Unmap(), src.Port())]++
			var p rtp.Packet
			switch {
			case n >= 2 && buf[1] >= 200 && buf[1] <= 204: // RTCP (RFC 5761 §4)
				tp.rtcp++
			case p.Unmarshal(buf[:n]) == nil:
				if tp.seen[p.SSRC] == nil {
					tp.seen[p.SSRC] = map[uint16]bool{}
				}
				tp.seen[p.SSRC][p.SequenceNumber] = true
			}
			tp.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = conn.SetReadDeadline(time.Now())
		<-done
	})
	return tp
}

// count returns the packets of ssrc seen.
func (tp *rtpTap) count(ssrc uint32) int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.seen[ssrc])
}

// rtcpCount returns the RTCP datagrams seen.
func (tp *rtpTap) rtcpCount() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.rtcp
}

// fromCount returns the datagrams that came from src.
func (tp *rtpTap) fromCount(src netip.AddrPort) int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.from[src]
}

// wait waits until the packet ssrc/seq has arrived.
func (tp *rtpTap) wait(t *testing.T, ssrc uint32, seq uint16, what string) {
	t.Helper()
	require.Eventually(t, func() bool {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		return tp.seen[ssrc][seq]
	}, 10*time.Second, 2*time.Millisecond, what)
}

// attackRR is an RTCP receiver report from the attacker's SSRC.
var attackRR = []byte{0x81, 201, 0, 7, 0, 0, 0x0B, 0xAD, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}

// attack sends n RTP packets of the attacker's SSRC, from seq on, to the
// relay port at, and one RTCP report to the RTCP port above each time.
func attack(t *testing.T, conn *net.UDPConn, at netip.AddrPort, seq uint16, n int) {
	t.Helper()
	for i := range n {
		sendPacket(t, conn, at, 0, attackerSSRC, seq+uint16(i), make([]byte, 160))
		_, err := conn.WriteToUDPAddrPort(attackRR, netip.AddrPortFrom(at.Addr(), at.Port()+1))
		require.NoError(t, err)
	}
}

// rtpPair is an RTP socket with its RTCP socket on the port above, as a
// phone has them: the media package's allocator makes one with the
// kernel's ports.
func rtpPair(t *testing.T) *media.Socket {
	t.Helper()
	ports, err := media.NewPorts("127.0.0.1", 0, 0)
	require.NoError(t, err)
	s, err := ports.Open()
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func attackerSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.2:0")))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// waitForeign waits until the relay has dropped at least rtpN RTP packets
// and rtcpN RTCP datagrams from foreign sources.
func waitForeign(t *testing.T, e *testEnv, rtpN, rtcpN uint64, what string) {
	t.Helper()
	require.Eventually(t, func() bool {
		rc := e.ports.RelayCounts()
		return rc.Dropped[media.DropForeignSource] >= rtpN && rc.ForeignRTCP >= rtcpN
	}, 10*time.Second, 2*time.Millisecond, "%s: %+v", what, e.ports.RelayCounts())
}

// TestRTPHijack: the attacker at the caller's relay ports before the
// caller's first packet (within the window and after it), at the
// consignee's before the carrier answers, then at both legs, RTP and RTCP,
// while the parties talk and after 2+ s of their silence. It never hears
// a party and no party hears it; every packet it sends once the streams
// know their peers is dropped and counted.
func TestRTPHijack(t *testing.T) {
	t.Parallel()
	e, sc := scriptedEnv(t, nil)
	clock := useMediaClock(e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The parties' media sockets come in RTP/RTCP pairs, so that RTCP
	// relayed to them is seen too.
	callerMedia, carrierMedia := rtpPair(t), rtpPair(t)
	e.phone.SDPAddr = callerMedia.RTPAddr()
	caller, callerRTCP := newTap(t, callerMedia.RTP), newTap(t, callerMedia.RTCP)
	carrier, carrierRTCP := newTap(t, carrierMedia.RTP), newTap(t, carrierMedia.RTCP)
	evil := attackerSocket(t)
	attacker := newTap(t, evil)

	d, err := e.phone.Call(ctx, e.vnum, testHost)
	require.NoError(t, err)
	vnumA, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)

	// Before the caller's first packet, in the window and after it.
	attack(t, evil, vnumA, 0, 5)
	require.Eventually(t, func() bool { return e.ports.RelayCounts().Received >= 5 }, 10*time.Second, 2*time.Millisecond)
	clock.Advance(media.LearnWindow + time.Second)
	attack(t, evil, vnumA, 5, 5)
	require.Eventually(t, func() bool { return e.ports.RelayCounts().Received >= 10 }, 10*time.Second, 2*time.Millisecond)
	// The caller keys the extension: from its SDP's address, so the stream
	// is the caller's from its first packet.
	require.NoError(t, sipua.SendDigits(callerMedia.RTP, vnumA, 101, testExt))
	attack(t, evil, vnumA, 10, 5)
	waitForeign(t, e, 5, 0, "the attacker's packets after the caller's first")

	// At the consignee's ports before the carrier answers, in the window
	// and after it.
	cc := sc.next(t)
	vnumB, err := sipua.MediaAddr(cc.req.Body())
	require.NoError(t, err)
	received := e.ports.RelayCounts().Received
	attack(t, evil, vnumB, 100, 5)
	clock.Advance(media.LearnWindow + time.Second)
	attack(t, evil, vnumB, 105, 5)
	require.Eventually(t, func() bool { return e.ports.RelayCounts().Received >= received+10 }, 10*time.Second, 2*time.Millisecond)
	open := make(chan struct{})
	close(open)
	dtmf := media.Codec{PT: 101, Name: "telephone-event", Rate: 8000, Channels: 1, Fmtp: "0-16"}
	cc.answerWith(open, media.Offer(netip.MustParseAddr("127.0.0.1"), carrierMedia.Port, 77, []media.Codec{sipua.PCMU}, &dtmf))
	<-cc.acted
	require.Eventually(t, func() bool { return callState(e) == "bridged" }, 10*time.Second, 5*time.Millisecond)
	// Each party's first packet reaches the other.
	sendPacket(t, carrierMedia.RTP, vnumB, 0, carrierSSRC, 0, make([]byte, 160))
	caller.wait(t, carrierSSRC, 0, "the carrier's first packet reaches the caller")
	sendPacket(t, callerMedia.RTP, vnumA, 0, callerSSRC, 0, make([]byte, 160))
	carrier.wait(t, callerSSRC, 0, "the caller's first packet reaches the carrier")
	foreign := e.ports.RelayCounts().Dropped[media.DropForeignSource]
	require.EqualValues(t, 5, foreign, "only the attacker's packets after the caller's first were dropped so far")

	// While both talk, the attacker at both legs.
	for i := range 20 {
		seq := uint16(1 + i)
		attack(t, evil, vnumA, 200+seq, 1)
		attack(t, evil, vnumB, 300+seq, 1)
		sendPacket(t, callerMedia.RTP, vnumA, 0, callerSSRC, seq, make([]byte, 160))
		sendPacket(t, carrierMedia.RTP, vnumB, 0, carrierSSRC, seq, make([]byte, 160))
		time.Sleep(2 * time.Millisecond)
	}
	// The readers take each socket's packets in order: once the parties'
	// last packets are through, so are the attacker's before them.
	carrier.wait(t, callerSSRC, 20, "the caller is heard")
	caller.wait(t, carrierSSRC, 20, "the carrier is heard")
	waitForeign(t, e, foreign+40, 40, "the attacker's packets while the parties talk")

	// Both silent for longer than the window (the old relay moved to the
	// next source after 2 s of silence), then the attacker, then the
	// parties again.
	clock.Advance(3 * media.LearnWindow)
	attack(t, evil, vnumA, 400, 10)
	attack(t, evil, vnumB, 500, 10)
	sendPacket(t, callerMedia.RTP, vnumA, 0, callerSSRC, 100, make([]byte, 160))
	sendPacket(t, carrierMedia.RTP, vnumB, 0, carrierSSRC, 100, make([]byte, 160))
	carrier.wait(t, callerSSRC, 100, "the caller is still heard after its silence")
	caller.wait(t, carrierSSRC, 100, "the carrier is still heard after its silence")
	waitForeign(t, e, foreign+60, 60, "the attacker's packets after the silence")

	require.Zero(t, carrier.count(attackerSSRC), "the consignee heard the attacker")
	require.Zero(t, caller.count(attackerSSRC), "the caller heard the attacker")
	require.Zero(t, carrierRTCP.rtcpCount()+callerRTCP.rtcpCount(), "the attacker's RTCP reached a party")
	require.Zero(t, attacker.count(carrierSSRC), "the attacker heard the consignee")
	require.Zero(t, attacker.count(callerSSRC), "the attacker heard the caller")
	require.Zero(t, attacker.rtcpCount(), "the attacker got RTCP")
	require.Zero(t, attacker.fromCount(vnumB), "the attacker got anything from the consignee's relay port")
	rc := e.ports.RelayCounts()
	require.EqualValues(t, foreign+60, rc.Dropped[media.DropForeignSource], "every attacker packet after the peers were known was dropped as foreign: %+v", rc)
	require.GreaterOrEqual(t, rc.ForeignRTCP, uint64(60))

	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	cc.requireEnded(t)
	e.waitNoCalls()
	e.assertLogsPrivate()
}

// TestRTPBehindNAT: a caller whose SDP names its private address, and who
// sends from another (its NAT's), still gets two-way audio and keys its
// extension, even when the attacker sent to its relay port first: the
// caller's packets come from the host its SIP came from, which the
// learning window prefers. The attacker is out from then on.
func TestRTPBehindNAT(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	clock := useMediaClock(e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.phone.SDPAddr = netip.MustParseAddrPort("10.20.30.40:4000") // behind NAT: an address nobody reaches
	evil := attackerSocket(t)
	attacker := newTap(t, evil)

	d, err := e.phone.Call(ctx, e.vnum, testHost)
	require.NoError(t, err)
	vnumA, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	attack(t, evil, vnumA, 0, 5)
	require.Eventually(t, func() bool { return e.ports.RelayCounts().Received >= 5 }, 10*time.Second, 2*time.Millisecond)
	require.NoError(t, sipua.SendDigits(e.phone.RTP, vnumA, 101, testExt))

	inv := nextInvite(t, e.carrier)
	vnumB, err := sipua.MediaAddr(inv.Body())
	require.NoError(t, err)
	nextSession(t, e.carrier)
	caller := newTap(t, e.phone.RTP)
	carrier := newTap(t, e.carrier.RTP)
	sendPacket(t, e.phone.RTP, vnumA, 0, callerSSRC, 1, make([]byte, 160))
	carrier.wait(t, callerSSRC, 1, "the caller behind NAT reaches the carrier")
	sendPacket(t, e.carrier.RTP, vnumB, 0, carrierSSRC, 1, make([]byte, 160))
	caller.wait(t, carrierSSRC, 1, "the carrier reaches the caller behind NAT, at the address its packets come from")

	foreign := e.ports.RelayCounts().Dropped[media.DropForeignSource]
	attack(t, evil, vnumA, 10, 5)
	clock.Advance(media.LearnWindow)
	attack(t, evil, vnumA, 20, 5)
	sendPacket(t, e.phone.RTP, vnumA, 0, callerSSRC, 2, make([]byte, 160))
	sendPacket(t, e.carrier.RTP, vnumB, 0, carrierSSRC, 2, make([]byte, 160))
	carrier.wait(t, callerSSRC, 2, "the caller is heard")
	caller.wait(t, carrierSSRC, 2, "the carrier is heard")
	waitForeign(t, e, foreign+10, 0, "the attacker's packets in the window and after it")
	require.Zero(t, carrier.count(attackerSSRC), "the consignee heard the attacker")
	require.Zero(t, attacker.count(carrierSSRC), "the attacker heard the consignee")

	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	e.waitNoCalls()
	e.assertLogsPrivate()
}

// TestRTPReofferMoves: a re-INVITE whose SDP names a new address moves the
// caller's stream there at once; the old address is a stranger from then
// on. A re-INVITE naming the same address changes nothing.
func TestRTPReofferMoves(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	vnumA, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	inv := nextInvite(t, e.carrier)
	vnumB, err := sipua.MediaAddr(inv.Body())
	require.NoError(t, err)
	nextSession(t, e.carrier)
	old := newTap(t, e.phone.RTP)
	carrier := newTap(t, e.carrier.RTP)
	sendPacket(t, e.phone.RTP, vnumA, 0, callerSSRC, 1, make([]byte, 160))
	carrier.wait(t, callerSSRC, 1, "the caller is heard")

	moved := rtpPair(t)
	newAddr := newTap(t, moved.RTP)
	target := d.InviteResponse.Contact().Address
	reinvite := func(at netip.AddrPort) {
		t.Helper()
		all, dtmf := media.DefaultCodecs()
		req := sip.NewRequest(sip.INVITE, target)
		req.SetBody(media.Offer(at.Addr(), int(at.Port()), 4242, all, dtmf))
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res, err := d.Do(ctx, req)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode)
		require.NoError(t, d.WriteRequest(sip.NewRequest(sip.ACK, target)))
	}
	reinvite(netip.AddrPortFrom(e.phone.Addr.Addr(), uint16(e.phone.RTPPort())))
	sendPacket(t, e.carrier.RTP, vnumB, 0, carrierSSRC, 1, make([]byte, 160))
	old.wait(t, carrierSSRC, 1, "a refresh naming the same address keeps the stream")

	reinvite(moved.RTPAddr())
	sendPacket(t, e.carrier.RTP, vnumB, 0, carrierSSRC, 2, make([]byte, 160))
	newAddr.wait(t, carrierSSRC, 2, "the carrier's audio goes to the new address at once")
	sendPacket(t, moved.RTP, vnumA, 0, callerSSRC, 2, make([]byte, 160))
	carrier.wait(t, callerSSRC, 2, "the new address is heard")
	foreign := e.ports.RelayCounts().Dropped[media.DropForeignSource]
	sendPacket(t, e.phone.RTP, vnumA, 0, attackerSSRC, 3, make([]byte, 160))
	sendPacket(t, moved.RTP, vnumA, 0, callerSSRC, 4, make([]byte, 160))
	carrier.wait(t, callerSSRC, 4, "the new address is still heard")
	require.Zero(t, carrier.count(attackerSSRC), "the old address is not heard any more")
	require.Equal(t, foreign+1, e.ports.RelayCounts().Dropped[media.DropForeignSource])
	require.Equal(t, 1, old.count(carrierSSRC), "nothing more went to the old address")

	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	e.waitNoCalls()
}
