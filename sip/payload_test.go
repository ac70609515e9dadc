package sip

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/sipua"
)

// keyOn waits up to d for an RFC 4733 packet of key on conn and returns
// its payload type; ok is false when none came.
func keyOn(conn *net.UDPConn, d time.Duration, key rune) (pt uint8, ok bool) {
	buf := make([]byte, 1500)
	deadline := time.Now().Add(d)
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	for time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return 0, false
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil || len(p.Payload) != 4 {
			continue
		}
		if ev, err := media.DecodeEvent(p.Payload); err == nil && ev.Digit == key {
			return p.PayloadType, true
		}
	}
	return 0, false
}

// TestCarrierTelephoneEventPayloadType: vnum offers telephone-event on
// 101 and the carrier answers it on 96 (RFC 4733 §2.1 lets each side pick
// its own). After the bridge a key pressed by B reaches the caller on the
// caller's payload type (101), and a key pressed by the caller reaches B
// on B's (96): leg B's payload types are taken from the carrier's answer.
func TestCarrierTelephoneEventPayloadType(t *testing.T) {
	e, sc := scriptedEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	carrierDTMF := &media.Codec{PT: 96, Name: "telephone-event", Rate: 8000, Channels: 1, Fmtp: "0-16"}
	answer := media.Offer(netip.MustParseAddr("127.0.0.1"), sc.RTPPort(), 77, []media.Codec{sipua.PCMU}, carrierDTMF)
	d, cc := bridged(t, e, sc, ctx, answer)
	vnumB, err := sipua.MediaAddr(cc.req.Body())
	require.NoError(t, err)
	vnumA, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)

	sendKey(t, sc.RTP, vnumB, 96, '5', 16000, 10)
	pt, ok := keyOn(e.phone.RTP, 5*time.Second, '5')
	require.True(t, ok, "B's key never reached the caller")
	require.Equal(t, uint8(101), pt, "the caller gets the key on its own telephone-event payload type")

	sendKey(t, e.phone.RTP, vnumA, 101, '7', 24000, 20)
	pt, ok = keyOn(sc.RTP, 5*time.Second, '7')
	require.True(t, ok, "the caller's key never reached B")
	require.Equal(t, uint8(96), pt, "B gets the key on the payload type of its answer")

	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	cc.requireEnded(t)
	e.waitNoCalls()
}
