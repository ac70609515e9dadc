package media

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// TestRelay: Relay relays one direction from the moment it returns, follows
// codecs set afterwards when called again, and refuses a second target.
func TestRelay(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	a := newTestStream(t, ports, caller.addr(), pcmaCodec, event101)
	// Leg B's stream is made before B's answer, with a provisional codec.
	b := newTestStream(t, ports, callee.addr(), pcmaCodec, event101)
	require.NoError(t, Relay(b, a))

	// One way only: the caller's packets are still its own (digits).
	caller.sendRTP(a.Socket().RTPAddr(), eventPacket(t, '7', 101, 160, 1, true, true))
	select {
	case d := <-a.Digits():
		require.Equal(t, '7', d)
	case <-time.After(time.Second):
		t.Fatal("a stream that only receives a relay still collects digits")
	}
	callee.sendRTP(b.Socket().RTPAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SSRC: 0xB}, Payload: []byte{0xD5}})
	require.Equal(t, []byte{0xD5}, caller.recvRTP(time.Second).Payload, "B's early media reaches the caller")

	// B answered PCMU: set it, and relay both ways with conversion.
	b.SetCodecs(pcmuCodec, event96)
	require.Equal(t, pcmuCodec, b.Audio())
	require.NoError(t, Relay(b, a), "relaying the same pair again follows the new codecs")
	require.NoError(t, Relay(a, b))
	payload := EncodeALaw([]int16{1000, -1000, 30000})
	caller.sendRTP(a.Socket().RTPAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SSRC: 0xA}, Payload: payload})
	got := callee.recvRTP(time.Second)
	require.Equal(t, uint8(0), got.PayloadType)
	require.Equal(t, EncodeULaw(DecodeALaw(payload)), got.Payload)
	caller.sendRTP(a.Socket().RTPAddr(), eventPacket(t, '1', 101, 320, 2, true, false))
	require.Equal(t, uint8(96), callee.recvRTP(time.Second).PayloadType, "telephone-event to B's type")

	other := newTestStream(t, ports, callee.addr(), pcmuCodec, nil)
	require.ErrorIs(t, Relay(a, other), ErrBridged)
	require.ErrorIs(t, Relay(a, a), ErrBridgeStreams)

	b.StopRelay()
	callee.sendRTP(b.Socket().RTPAddr(), eventPacket(t, '9', 96, 480, 3, true, true))
	select {
	case d := <-b.Digits():
		require.Equal(t, '9', d, "after StopRelay the packets are the stream's own")
	case <-time.After(time.Second):
		t.Fatal("no digit after StopRelay")
	}
}

// TestRelayWatchKeys: a bridged stream that watches keys (the consignee's
// block key) collects them and still relays every packet; without it, a
// bridged stream collects none.
func TestRelayWatchKeys(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	a := newTestStream(t, ports, caller.addr(), pcmuCodec, event101)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, event96)
	require.NoError(t, Relay(a, b))
	require.NoError(t, Relay(b, a))

	callee.sendRTP(b.Socket().RTPAddr(), eventPacket(t, '3', 96, 160, 1, true, true))
	require.Equal(t, uint8(101), caller.recvRTP(time.Second).PayloadType, "relayed in the caller's type")
	select {
	case d := <-b.Digits():
		t.Fatalf("a bridged stream not watching collected %q", d)
	default:
	}

	b.WatchKeys(true)
	callee.sendRTP(b.Socket().RTPAddr(), eventPacket(t, '*', 96, 320, 2, true, true))
	require.Equal(t, uint8(101), caller.recvRTP(time.Second).PayloadType, "still relayed while watched")
	select {
	case d := <-b.Digits():
		require.Equal(t, '*', d)
	case <-time.After(time.Second):
		t.Fatal("a watched key was not collected")
	}
	b.WatchKeys(false)
}
