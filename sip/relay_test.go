package sip

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/sipua"
)

// sendPacket sends one RTP packet of payload type pt.
func sendPacket(t *testing.T, conn *net.UDPConn, to netip.AddrPort, pt uint8, ssrc uint32, seq uint16, payload []byte) {
	t.Helper()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc}, Payload: payload}
	b, err := pkt.Marshal()
	require.NoError(t, err)
	_, err = conn.WriteToUDPAddrPort(b, to)
	require.NoError(t, err)
}

// recvPacket reads RTP until a packet of ssrc arrives.
func recvPacket(t *testing.T, conn *net.UDPConn, ssrc uint32) rtp.Packet {
	t.Helper()
	buf := make([]byte, 1500)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(3*time.Second)))
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	for {
		n, _, err := conn.ReadFromUDP(buf)
		require.NoError(t, err, "no RTP of ssrc %x", ssrc)
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) == nil && p.SSRC == ssrc {
			return p
		}
	}
}

// TestPCMACallerReachesPCMUCarrier: leg B is offered both G.711 laws (the
// caller's first) and telephone-event, and the relay converts between the
// caller's A-law and the carrier's µ-law both ways.
func TestPCMACallerReachesPCMUCarrier(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	e.phone.Codecs = []media.Codec{sipua.PCMA}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := e.phone.Call(ctx, e.vnum, testHost)
	require.NoError(t, err)
	vnumA, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	answer, err := media.ParseSDP(d.InviteResponse.Body())
	require.NoError(t, err)
	require.Equal(t, "PCMA", answer.Codecs[0].Name, "leg A keeps its codec")
	require.NoError(t, sipua.SendDigits(e.phone.RTP, vnumA, 101, testExt))

	inv := nextInvite(t, e.carrier)
	offer, err := media.ParseSDP(inv.Body())
	require.NoError(t, err)
	var names []string
	for _, c := range offer.Codecs {
		names = append(names, c.Name)
	}
	require.Equal(t, []string{"PCMA", "PCMU"}, names, "both laws, the caller's first")
	require.NotNil(t, offer.DTMF, "telephone-event offered")
	vnumB := offer.RemoteAddr()
	ds := nextSession(t, e.carrier) // the carrier answered PCMU only

	// A session refresh from the carrier that lists PCMA first is answered
	// with the codec in use, which the relay converts to.
	reinv := sip.NewRequest(sip.INVITE, ds.InviteRequest.Contact().Address)
	reinv.SetBody(e.carrier.SDP(sipua.PCMA, sipua.PCMU))
	reinv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res, err := ds.Do(ctx, reinv)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	refreshed, err := media.ParseSDP(res.Body())
	require.NoError(t, err)
	require.Equal(t, "PCMU", refreshed.Codecs[0].Name, "the re-offer's answer keeps PCMU")
	ack := sip.NewRequest(sip.ACK, ds.InviteRequest.Contact().Address)
	require.NoError(t, ds.WriteRequest(ack))

	// Every A-law byte reaches the carrier as the µ-law byte of the same sample.
	fromA := make([]byte, 256)
	for i := range fromA {
		fromA[i] = byte(i)
	}
	sendPacket(t, e.phone.RTP, vnumA, 8, 0xA11CE, 1, fromA)
	got := recvPacket(t, e.carrier.RTP, 0xA11CE)
	require.Equal(t, uint8(0), got.PayloadType, "PCMU's payload type towards the carrier")
	require.Equal(t, media.EncodeULaw(media.DecodeALaw(fromA)), got.Payload)

	fromB := make([]byte, 256)
	for i := range fromB {
		fromB[i] = byte(255 - i)
	}
	sendPacket(t, e.carrier.RTP, vnumB, 0, 0xB0B, 1, fromB)
	got = recvPacket(t, e.phone.RTP, 0xB0B)
	require.Equal(t, uint8(8), got.PayloadType, "PCMA's payload type towards the caller")
	require.Equal(t, media.EncodeALaw(media.DecodeULaw(fromB)), got.Payload)
	// And the samples survive: within G.711's quantisation of each other.
	for i, s := range media.DecodeALaw(got.Payload) {
		want := media.DecodeULaw(fromB[i : i+1])[0]
		require.InDelta(t, want, s, float64(abs(want))/8+16, "sample %d", i)
	}

	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	e.waitNoCalls()
}

func abs(x int16) int16 {
	if x < 0 {
		return -x
	}
	return x
}

// TestRelayLosesNoPacketAfterAnswer: phones send RTP from the moment their
// dialog is up. Every packet either side sends once the carrier has
// answered and been acknowledged arrives at the other side, even while the
// store is slow to record the answer; none is taken for IVR input because
// the relay came up late.
func TestRelayLosesNoPacketAfterAnswer(t *testing.T) {
	t.Parallel()
	for _, mode := range []config.AnswerMode{config.AnswerAnswer, config.AnswerEarly} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, "answer", func(o *Options) { o.AnswerMode = mode })
			// The store takes its time over the answer's record: media must
			// not wait for it.
			slow := make(chan struct{})
			e.router.mu.Lock() // the server's goroutines read it
			e.router.slowAnswer = slow
			e.router.mu.Unlock()
			var release atomic.Bool
			free := func() {
				if !release.Swap(true) {
					close(slow)
				}
			}
			t.Cleanup(free)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d, err := e.phone.Invite(ctx, e.vnum, testHost+"-"+testExt)
			require.NoError(t, err)
			var vnumA netip.AddrPort
			started := make(chan struct{})
			// The caller keys nothing (the extension is dialled) and sends
			// from its first SDP answer on, every 2 ms.
			var sentA atomic.Uint32
			stopA := make(chan struct{})
			go func() {
				<-started
				for seq := uint16(0); ; seq++ {
					select {
					case <-stopA:
						return
					default:
					}
					pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, SSRC: 0xA11CE}, Payload: make([]byte, 160)}
					if b, err := pkt.Marshal(); err == nil {
						_, _ = e.phone.RTP.WriteToUDPAddrPort(b, vnumA)
					}
					sentA.Store(uint32(seq) + 1)
					time.Sleep(2 * time.Millisecond)
				}
			}()
			var once atomic.Bool
			opts := answerOpts(func(body []byte) {
				if once.Swap(true) {
					return
				}
				to, err := sipua.MediaAddr(body)
				if err == nil {
					vnumA = to
					close(started)
				}
			})
			require.NoError(t, d.WaitAnswer(ctx, opts))
			opts.OnResponse(d.InviteResponse) // when the 200 was the first
			require.NoError(t, d.Ack(ctx))
			inv := nextInvite(t, e.carrier)
			vnumB, err := sipua.MediaAddr(inv.Body())
			require.NoError(t, err)

			nextSession(t, e.carrier) // the carrier has its ACK: the call is up
			fromA := sentA.Load()     // packets the caller sends from here on must arrive
			// The carrier sends 100 packets at once, the caller 100 more.
			for seq := uint16(0); seq < 100; seq++ {
				sendPacket(t, e.carrier.RTP, vnumB, 0, 0xB0B, seq, make([]byte, 160))
			}
			gotA := countFrom(t, e.carrier.RTP, 0xA11CE, uint16(fromA), uint16(fromA)+100)
			close(stopA)
			require.Equal(t, 100, gotA, "every packet of the caller after the answer reaches the carrier (vnum's relay: %+v)", e.ports.RelayCounts())
			require.Equal(t, 100, countFrom(t, e.phone.RTP, 0xB0B, 0, 100), "every packet of the carrier reaches the caller")
			free()

			require.NoError(t, d.Bye(ctx))
			require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
			e.waitNoCalls()
		})
	}
}

// countFrom reads RTP of ssrc until a packet with a sequence number of last
// or above arrives (or a second passes without any) and counts the distinct
// packets with sequence numbers in [first, last).
func countFrom(t *testing.T, conn *net.UDPConn, ssrc uint32, first, last uint16) int {
	t.Helper()
	seen := map[uint16]bool{}
	buf := make([]byte, 1500)
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	for {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Second)))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return len(seen)
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil || p.SSRC != ssrc {
			continue
		}
		switch s := p.SequenceNumber; {
		case s >= last:
			return len(seen)
		case s >= first:
			seen[s] = true
		}
	}
}

// answerOpts are the softphone's credentials, with body called with the
// first SDP vnum answers with (183 early media, or the 200).
func answerOpts(body func([]byte)) sipgo.AnswerOptions {
	return sipgo.AnswerOptions{Username: "alice", Password: "s3cret", OnResponse: func(r *sip.Response) error {
		if len(r.Body()) > 0 && r.StatusCode >= 180 {
			body(r.Body())
		}
		return nil
	}}
}

// TestEarlyMediaFlowsToTheCallerOnly: while B rings, its early media
// reaches the caller, but what the caller sends is IVR audio and stays
// with vnum until B answers.
func TestEarlyMediaFlowsToTheCallerOnly(t *testing.T) {
	t.Parallel()
	e := newTestEnvWith(t, sipua.CarrierOptions{Mode: "answer", RingFor: 3 * time.Second, EarlyMedia: true}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost, testExt)
	vnumA, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	nextInvite(t, e.carrier)
	recvPacket(t, e.phone.RTP, sipua.EarlyMediaSSRC) // early media is relayed
	for seq := uint16(0); seq < 20; seq++ {
		sendPacket(t, e.phone.RTP, vnumA, 0, 0xCA11, seq, make([]byte, 160))
	}
	require.Zero(t, sipua.CountRTP(e.carrier.RTP, 500*time.Millisecond, 0xCA11), "the caller's audio does not reach B before it answers")
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
}
