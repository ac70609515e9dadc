package media

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

var (
	pcmuCodec = Codec{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1}
	pcmaCodec = Codec{PT: 8, Name: "PCMA", Rate: 8000, Channels: 1}
	event101  = &Codec{PT: 101, Name: "telephone-event", Rate: 8000, Channels: 1, Fmtp: "0-16"}
	event96   = &Codec{PT: 96, Name: "telephone-event", Rate: 8000, Channels: 1, Fmtp: "0-15"}
)

// peer is a far end: a UDP socket on 127.0.0.1 with a kernel-chosen port.
type peer struct {
	t    testing.TB
	conn *net.UDPConn
}

func newPeer(t testing.TB) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c}
}

func (p *peer) addr() netip.AddrPort {
	return p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (p *peer) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	_, err := p.conn.WriteToUDPAddrPort(b, to)
	require.NoError(p.t, err)
}

func (p *peer) sendRTP(to netip.AddrPort, pkt *rtp.Packet) {
	p.t.Helper()
	b, err := pkt.Marshal()
	require.NoError(p.t, err)
	p.send(to, b)
}

// recv returns the next datagram and its source, or nil after timeout.
func (p *peer) recv(timeout time.Duration) ([]byte, netip.AddrPort) {
	p.t.Helper()
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(timeout)))
	buf := make([]byte, maxPacket)
	n, src, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}
	}
	return buf[:n], src
}

func (p *peer) recvRTP(timeout time.Duration) *rtp.Packet {
	p.t.Helper()
	b, _ := p.recv(timeout)
	require.NotNil(p.t, b, "no packet within %v", timeout)
	var pkt rtp.Packet
	require.NoError(p.t, pkt.Unmarshal(b))
	return &pkt
}

// newTestStream opens a socket pair and a started stream on it; it is
// closed at cleanup and the test checks that its port was released.
func newTestStream(t testing.TB, ports *Ports, remote netip.AddrPort, audio Codec, dtmf *Codec) *Stream {
	t.Helper()
	sock, err := ports.Open()
	require.NoError(t, err)
	s := NewStream(sock, remote, audio, dtmf, nil)
	s.Start()
	t.Cleanup(func() { s.Close() })
	return s
}

// checkNoLeaks fails the test when goroutines or port pairs outlive it.
func checkNoLeaks(t *testing.T, ports *Ports) {
	t.Helper()
	before := runtime.NumGoroutine()
	// Cleanups run last in, first out: the streams made later in the test
	// are closed before these checks run. Stream.Close waits for its
	// goroutines, so the count must be back at once; the short poll only
	// absorbs goroutines of the runtime and of net.
	t.Cleanup(func() {
		require.Zero(t, ports.InUse(), "port pairs leaked")
		n := runtime.NumGoroutine()
		for deadline := time.Now().Add(time.Second); n > before && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			n = runtime.NumGoroutine()
		}
		require.LessOrEqual(t, n, before, "goroutines leaked")
	})
}

func eventPacket(t testing.TB, key rune, pt uint8, ts uint32, seq uint16, marker, end bool) *rtp.Packet {
	t.Helper()
	p := ev(t, key, ts, seq, marker, end, 400)
	p.PayloadType = pt
	return p
}

func TestStreamDigitsRFC4733(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller := newPeer(t)
	s := newTestStream(t, ports, caller.addr(), pcmuCodec, event96)
	start := s.LastRTP()

	for i, k := range "12#" {
		for _, p := range sippEvent(t, k, uint32(1000+1600*i), uint16(10*i)) {
			p.PayloadType = 96
			caller.sendRTP(s.Socket().RTPAddr(), p)
		}
	}
	caller.send(s.Socket().RTPAddr(), []byte{0x80, 96, 0}) // short packet: ignored
	var got []rune
	for range 3 {
		select {
		case k := <-s.Digits():
			got = append(got, k)
		case <-time.After(2 * time.Second):
			t.Fatalf("digits so far %q", string(got))
		}
	}
	require.Equal(t, "12#", string(got))
	require.True(t, s.LastRTP().After(start))
}

func TestStreamDigitsInBand(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller := newPeer(t)
	s := newTestStream(t, ports, caller.addr(), pcmaCodec, nil)

	pcm := keyed("42", 100*time.Millisecond, 100*time.Millisecond)
	for i := 0; i < len(pcm); i += frameSamples {
		caller.sendRTP(s.Socket().RTPAddr(), &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: uint16(i), Timestamp: uint32(i), SSRC: 1},
			Payload: EncodeALaw(pcm[i : i+frameSamples]),
		})
	}
	for _, want := range "42" {
		select {
		case k := <-s.Digits():
			require.Equal(t, want, k)
		case <-time.After(2 * time.Second):
			t.Fatalf("no digit %q", want)
		}
	}
}

func TestStreamPlay(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller := newPeer(t)
	s := newTestStream(t, ports, caller.addr(), pcmaCodec, event101)

	// 1 s of audio is 50 packets, paced over about a second.
	pcm := DTMFTone('1', time.Second)
	begin := time.Now()
	require.NoError(t, s.Play(context.Background(), pcm))
	require.GreaterOrEqual(t, time.Since(begin), 900*time.Millisecond, "paced at 20 ms")

	var first *rtp.Packet
	for i := range 50 {
		p := caller.recvRTP(time.Second)
		if i == 0 {
			first = p
			require.True(t, p.Marker, "marker starts the talkspurt")
		} else {
			require.False(t, p.Marker)
		}
		require.Equal(t, uint8(8), p.PayloadType)
		require.Equal(t, first.SSRC, p.SSRC)
		require.Equal(t, first.SequenceNumber+uint16(i), p.SequenceNumber)
		require.Equal(t, first.Timestamp+uint32(i*frameSamples), p.Timestamp)
		require.Equal(t, EncodeALaw(pcm[i*frameSamples:(i+1)*frameSamples]), p.Payload)
	}
	b, _ := caller.recv(100 * time.Millisecond)
	require.Nil(t, b, "exactly 50 packets")

	// A second prompt continues the sequence, starts a new talkspurt and
	// pads its last packet with silence.
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, s.Play(context.Background(), make([]int16, 200)))
	p := caller.recvRTP(time.Second)
	require.True(t, p.Marker)
	require.Equal(t, first.SequenceNumber+50, p.SequenceNumber)
	require.GreaterOrEqual(t, p.Timestamp-first.Timestamp, uint32(50*frameSamples+frameSamples*4), "timestamp counts the silence")
	p = caller.recvRTP(time.Second)
	require.Equal(t, first.SequenceNumber+51, p.SequenceNumber)
	require.Len(t, p.Payload, frameSamples)
}

func TestStreamPlayStops(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller := newPeer(t)
	s := newTestStream(t, ports, caller.addr(), pcmuCodec, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Play(ctx, Ringback(10*time.Second)), context.DeadlineExceeded)

	go func() {
		caller.recvRTP(5 * time.Second) // the ringback plays
		s.Close()
	}()
	require.ErrorIs(t, s.Play(context.Background(), Ringback(10*time.Second)), ErrClosed)
	require.ErrorIs(t, s.Play(context.Background(), Ringback(time.Second)), ErrClosed)

	g729 := NewStream(s.Socket(), caller.addr(), Codec{PT: 18, Name: "G729", Rate: 8000}, nil, nil)
	require.ErrorIs(t, g729.Play(context.Background(), Ringback(time.Second)), ErrUnsupportedCodec)
}

func TestStreamPlayOnHoldSendsNothing(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller := newPeer(t)
	s := newTestStream(t, ports, netip.MustParseAddrPort("0.0.0.0:4000"), pcmuCodec, nil)
	require.NoError(t, s.Play(context.Background(), make([]int16, 3*frameSamples)))
	s.SetRemote(caller.addr())
	require.Equal(t, caller.addr(), s.Remote())
	require.NoError(t, s.Play(context.Background(), make([]int16, frameSamples)))
	caller.recvRTP(time.Second)
}

func TestStreamCloseIdempotent(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	sock, err := ports.Open()
	require.NoError(t, err)
	s := NewStream(sock, netip.MustParseAddrPort("127.0.0.1:9"), pcmuCodec, nil, nil)
	s.Start()
	s.Start()
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	s.Start() // no goroutine after Close
	<-s.Done()

	// A stream that never started closes too.
	sock, err = ports.Open()
	require.NoError(t, err)
	require.NoError(t, NewStream(sock, netip.AddrPort{}, pcmuCodec, nil, nil).Close())
}

func TestStreamLatching(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	real, stray := newPeer(t), newPeer(t)
	signalled := netip.MustParseAddrPort("127.0.0.1:9")
	s := newTestStream(t, ports, signalled, pcmuCodec, event101)
	require.Equal(t, netip.MustParseAddrPort("127.0.0.1:10"), s.RTCPRemote(), "rtcp defaults to rtp+1")

	audio := &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 5}, Payload: make([]byte, frameSamples)}
	real.sendRTP(s.Socket().RTPAddr(), audio)
	require.Eventually(t, func() bool { return s.Remote() == real.addr() }, time.Second, 5*time.Millisecond)
	want := real.addr()
	require.Equal(t, netip.AddrPortFrom(want.Addr(), want.Port()+1), s.RTCPRemote())

	// A stray source does not move the remote, nor is its packet taken.
	// The real source's digit, read after the stray packet by the one
	// reader, shows that the stray packet has been handled.
	stray.sendRTP(s.Socket().RTPAddr(), audio)
	real.sendRTP(s.Socket().RTPAddr(), eventPacket(t, '5', 101, 8000, 1, true, true))
	select {
	case k := <-s.Digits():
		require.Equal(t, '5', k)
	case <-time.After(2 * time.Second):
		t.Fatal("the real source's digit was not read")
	}
	require.Equal(t, real.addr(), s.Remote())
	require.EqualValues(t, 1, ports.RelayCounts().Dropped[DropForeignSource], "the stray packet was dropped")
}

// TestStreamSurvivesPanickingPacket: a packet whose handling panics (here
// the stream's formats are knocked out from under the reader) is dropped
// and logged; the reader goes on and the next packets are handled.
func TestStreamSurvivesPanickingPacket(t *testing.T) {
	ports := newTestPorts(t)
	checkNoLeaks(t, ports)
	caller := newPeer(t)
	var logs syncBuffer
	sock, err := ports.Open()
	require.NoError(t, err)
	s := NewStream(sock, caller.addr(), pcmuCodec, event96, slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { s.Close() })
	good := s.formats.Load()
	s.formats.Store(nil) // detect dereferences it: the next packet panics
	s.Start()

	caller.sendRTP(s.Socket().RTPAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1}, Payload: make([]byte, 160)})
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "packet handling panicked") },
		2*time.Second, 5*time.Millisecond)
	require.Contains(t, logs.String(), "goroutine ", "the log line carries the stack")

	s.formats.Store(good)
	for i, p := range sippEvent(t, '7', 5000, 20) {
		p.PayloadType = 96
		p.SequenceNumber += uint16(i)
		caller.sendRTP(s.Socket().RTPAddr(), p)
	}
	select {
	case k := <-s.Digits():
		require.Equal(t, '7', k)
	case <-time.After(2 * time.Second):
		t.Fatal("the reader stopped after the panic")
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
