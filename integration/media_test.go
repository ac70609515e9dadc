package integration

import (
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rtpSink records the RTP that vnum relays to one leg, when that leg's SDP
// names the sink and the leg itself sends nothing (so vnum's latching has
// nothing to follow).
type rtpSink struct {
	conn net.PacketConn
	mu   sync.Mutex
	byPT map[uint8]int
	// matched counts packets whose payload is one of the reference
	// payloads (a transparent G.711 relay passes them on byte for byte).
	matched int
	ref     map[string]bool
	from    map[string]int
	done    chan struct{}
}

func newRTPSink(t *testing.T, port int, ref map[string]bool) *rtpSink {
	t.Helper()
	letGo(port)
	conn, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	s := &rtpSink{conn: conn, byPT: map[uint8]int{}, ref: ref, from: map[string]int{}, done: make(chan struct{})}
	t.Cleanup(func() { _ = conn.Close(); <-s.done })
	go func() {
		defer close(s.done)
		buf := make([]byte, 2048)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < rtpHeaderLen || buf[0]>>6 != 2 {
				continue
			}
			s.mu.Lock()
			s.byPT[buf[1]&0x7f]++
			s.from[from.String()]++
			if s.ref[string(buf[rtpHeaderLen:n])] {
				s.matched++
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *rtpSink) summary() (byPT map[uint8]int, matched int, from map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byPT = map[uint8]int{}
	for k, v := range s.byPT {
		byPT[k] = v
	}
	from = map[string]int{}
	for k, v := range s.from {
		from[k] = v
	}
	return byPT, s.matched, from
}

// g711aPayloads are the RTP payloads of sip-tester's g711a.pcap (PCMA,
// 30 ms packets).
func g711aPayloads(t *testing.T, pcaps string) map[string]bool {
	t.Helper()
	f, err := readPcap(filepath.Join(pcaps, "g711a.pcap"))
	require.NoError(t, err)
	ref := map[string]bool{}
	for _, p := range f.packets {
		udpLen := int(binary.BigEndian.Uint16(p.data[p.rtpOff-udpHeaderLen+4:]))
		end := p.rtpOff - udpHeaderLen + udpLen
		payload := string(p.data[p.rtpOff+rtpHeaderLen : end])
		// skip the silent packets: they are alike and prove little
		if payload != string(make([]byte, len(payload))) && payload[0] != 0xd5 {
			ref[payload] = true
		}
	}
	require.NotEmpty(t, ref)
	return ref
}

// mediaSetup starts a seeded vnum and an RTP sink that knows the payloads
// of g711a.pcap, and returns them with the sipp stage.
func mediaSetup(t *testing.T) (e *env, b binding, stage string, sinkPort int, sink *rtpSink) {
	t.Helper()
	pcaps := sippPrereqs(t)
	e, b = servedEnv(t, nil)
	sinkPort = freePorts(t, 2)
	sink = newRTPSink(t, sinkPort, g711aPayloads(t, pcaps))
	return e, b, newStage(t, pcaps), sinkPort, sink
}

// TestSippMediaCallerToCallee: the caller's PCMA reaches B through vnum's
// relay, byte for byte, from vnum's own address.
func TestSippMediaCallerToCallee(t *testing.T) {
	t.Parallel()
	e, b, stage, sinkPort, sink := mediaSetup(t)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_carrier_sink.xml", 40*time.Second, "-key", "sink", fmt.Sprint(sinkPort))
	caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_direct.xml"), 40*time.Second, hostNumber+"-"+b.Extension, "-d", "4000")

	requireBothSucceed(caller, carrier, 50*time.Second, 20*time.Second)
	byPT, matched, from := sink.summary()
	t.Logf("B received RTP by payload type %v, %d packets of the caller's audio, from %v", byPT, matched, from)
	// 4 s of 30 ms packets is ~130; B answers ~0.5 s in
	require.GreaterOrEqual(t, matched, 60, "the caller's audio should reach B (by PT: %v)", byPT)
	for addr := range from {
		host, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1", host)
		require.NotEqual(t, fmt.Sprint(caller.mediaPort), port, "B gets RTP straight from the caller's port: the relay leaks A's address")
	}
	rows := e.waitCDRs(1, 10*time.Second)
	requireAnswered(t, rows[0], b)
}

// TestSippMediaCalleeToCaller: B's PCMA reaches the caller through vnum.
func TestSippMediaCalleeToCaller(t *testing.T) {
	t.Parallel()
	e, b, stage, sinkPort, sink := mediaSetup(t)
	carrier := startCarrier(t, stage, e.carrierPort, "uas_carrier.xml", 40*time.Second)
	caller := startSoftphone(t, stage, e, scenarioPath(t, "uac_direct_sink.xml"), 40*time.Second,
		hostNumber+"-"+b.Extension, "-d", "4000", "-key", "sink", fmt.Sprint(sinkPort))

	requireBothSucceed(caller, carrier, 50*time.Second, 20*time.Second)
	byPT, matched, from := sink.summary()
	t.Logf("the caller received RTP by payload type %v, %d packets of B's audio, from %v", byPT, matched, from)
	require.GreaterOrEqual(t, matched, 60, "B's audio should reach the caller (by PT: %v)", byPT)
	for addr := range from {
		_, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		require.NotEqual(t, fmt.Sprint(carrier.mediaPort), port, "the caller gets RTP straight from B's port: the relay leaks B's address")
	}
	rows := e.waitCDRs(1, 10*time.Second)
	requireAnswered(t, rows[0], b)
	requireAbsent(t, carrier, "the caller's RTP port", fmt.Sprintf("m=audio %d ", sinkPort))
}
