package media

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// tapped is a Tap that keeps copies of what it is handed.
type tapped struct {
	mu   sync.Mutex
	pkts []rtp.Packet
}

func (t *tapped) Packet(pt uint8, ssrc, ts uint32, _ time.Time, payload []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pkts = append(t.pkts, rtp.Packet{Header: rtp.Header{PayloadType: pt, SSRC: ssrc, Timestamp: ts},
		Payload: append([]byte(nil), payload...)})
	return true
}

func (t *tapped) got() []rtp.Packet {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]rtp.Packet(nil), t.pkts...)
}

// TestTapSeesRelayedPackets: a tap on one leg is handed each packet that
// leg relays, as it was read (the A-law payload and its payload type
// before the relay converts it to the other leg's µ-law); the other leg's
// packets are not handed to it; the tapped stream stays in user space;
// after SetTap(nil) nothing more is handed.
func TestTapSeesRelayedPackets(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller, callee := newPeer(t), newPeer(t)
	a := newTestStream(t, ports, caller.addr(), pcmaCodec, event101)
	b := newTestStream(t, ports, callee.addr(), pcmuCodec, event96)
	tap := &tapped{}
	a.SetTap(tap)
	require.True(t, a.kuser.Load(), "a tapped stream is kept in user space")
	startBridge(t, a, b)

	for i := range 3 {
		caller.sendRTP(a.Socket().RTPAddr(), &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: uint16(i), Timestamp: uint32(160 * i), SSRC: 0xA},
			Payload: EncodeALaw(DTMFTone('1', 20*time.Millisecond)),
		})
		got := callee.recvRTP(time.Second)
		require.Equal(t, uint8(0), got.PayloadType, "the relay converted it")
	}
	callee.sendRTP(b.Socket().RTPAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 0xB},
		Payload: make([]byte, frameSamples)})
	caller.recvRTP(time.Second)

	got := tap.got()
	require.Len(t, got, 3, "the caller's packets, not the callee's")
	for i, p := range got {
		require.Equal(t, uint8(8), p.PayloadType)
		require.Equal(t, uint32(0xA), p.SSRC)
		require.Equal(t, uint32(160*i), p.Timestamp)
		require.Equal(t, EncodeALaw(DTMFTone('1', 20*time.Millisecond)), p.Payload)
	}

	a.SetTap(nil)
	caller.sendRTP(a.Socket().RTPAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SSRC: 0xA},
		Payload: make([]byte, frameSamples)})
	callee.recvRTP(time.Second)
	require.Len(t, tap.got(), 3)
}
