package media

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestStreamQuiet: Quiet fires once no RTP came for d, not while packets
// flow, and never once stopped.
func TestStreamQuiet(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	far := newPeer(t)
	s := newTestStream(t, ports, far.addr(), pcmuCodec, nil)

	silent, stopSilent := s.Quiet(50 * time.Millisecond)
	defer stopSilent()
	select {
	case <-silent:
	case <-time.After(5 * time.Second):
		t.Fatal("a silent stream never went quiet")
	}

	talking, stopTalking := s.Quiet(400 * time.Millisecond)
	defer stopTalking()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 7}, Payload: make([]byte, frameSamples)}
	for i := 0; i < 60; i++ {
		pkt.SequenceNumber = uint16(i)
		far.sendRTP(s.Socket().RTPAddr(), pkt)
		time.Sleep(20 * time.Millisecond)
		select {
		case <-talking:
			t.Fatalf("quiet after %d packets while RTP flows", i+1)
		default:
		}
	}
	select {
	case <-talking:
	case <-time.After(5 * time.Second):
		t.Fatal("no quiet after the packets stopped")
	}

	stopped, stop := s.Quiet(20 * time.Millisecond)
	stop()
	select {
	case <-stopped:
		t.Fatal("a stopped watch fired")
	case <-time.After(200 * time.Millisecond):
	}
}
