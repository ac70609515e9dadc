package integration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sip-tester ships one RFC 2833 capture per key (dtmf_2833_0.pcap ...
// dtmf_2833_pound.pcap): PT 101, one event, 10 packets over 140 ms, the
// marker on the first, the end packet sent three times with one sequence
// number, all with the event's RTP timestamp and SSRC 0x0e05384e. Each file
// has its own fixed sequence numbers and timestamp, so playing the same
// file twice (E = 1123) sends the same event twice: a receiver that, as
// RFC 4733 §2.5.1 says, takes one timestamp for one event hears one "1".
// A real phone numbers on. dtmfPcaps writes, for each digit of E, a copy
// of the digit's capture renumbered to continue the previous one: sequence
// numbers run on and each digit gets a new timestamp.

const (
	pcapHeaderLen = 24
	pcapRecordLen = 16
	ethHeaderLen  = 14
	udpHeaderLen  = 8
	rtpHeaderLen  = 12
)

type pcapPacket struct {
	record []byte // the 16-byte record header
	data   []byte // the frame
	rtpOff int    // offset of the RTP header in data
}

type pcapFile struct {
	header  []byte
	order   binary.ByteOrder
	packets []pcapPacket
}

func readPcap(path string) (*pcapFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(raw) < pcapHeaderLen {
		return nil, errors.New("short pcap header")
	}
	f := &pcapFile{header: raw[:pcapHeaderLen]}
	switch binary.LittleEndian.Uint32(raw) {
	case 0xa1b2c3d4:
		f.order = binary.LittleEndian
	case 0xd4c3b2a1:
		f.order = binary.BigEndian
	default:
		return nil, fmt.Errorf("%s: not a microsecond libpcap file", path)
	}
	if link := f.order.Uint32(raw[20:24]); link != 1 {
		return nil, fmt.Errorf("%s: link type %d, want Ethernet", path, link)
	}
	for off := pcapHeaderLen; off < len(raw); {
		if off+pcapRecordLen > len(raw) {
			return nil, errors.New("truncated pcap record")
		}
		rec := raw[off : off+pcapRecordLen]
		capLen := int(f.order.Uint32(rec[8:12]))
		off += pcapRecordLen
		if off+capLen > len(raw) {
			return nil, errors.New("truncated pcap packet")
		}
		data := append([]byte(nil), raw[off:off+capLen]...)
		off += capLen
		if len(data) < ethHeaderLen+20 || binary.BigEndian.Uint16(data[12:14]) != 0x0800 {
			return nil, fmt.Errorf("%s: not an IPv4 frame", path)
		}
		ihl := int(data[ethHeaderLen]&0x0f) * 4
		rtpOff := ethHeaderLen + ihl + udpHeaderLen
		if len(data) < rtpOff+rtpHeaderLen || data[ethHeaderLen+9] != 17 {
			return nil, fmt.Errorf("%s: not an RTP/UDP frame", path)
		}
		f.packets = append(f.packets, pcapPacket{record: append([]byte(nil), rec...), data: data, rtpOff: rtpOff})
	}
	if len(f.packets) == 0 {
		return nil, fmt.Errorf("%s: no packets", path)
	}
	return f, nil
}

func (f *pcapFile) write(path string) error {
	out := append([]byte(nil), f.header...)
	for _, p := range f.packets {
		out = append(out, p.record...)
		out = append(out, p.data...)
	}
	return os.WriteFile(path, out, 0o644)
}

// dtmfPcapName is sip-tester's file for one key.
func dtmfPcapName(key rune) (string, error) {
	switch {
	case key >= '0' && key <= '9':
		return fmt.Sprintf("dtmf_2833_%c.pcap", key), nil
	case key == '*':
		return "dtmf_2833_star.pcap", nil
	case key == '#':
		return "dtmf_2833_pound.pcap", nil
	}
	return "", fmt.Errorf("no DTMF capture for key %q", key)
}

// dtmfPcaps writes one renumbered capture per key of keys into dir and
// returns their file names (relative to dir), in order.
func dtmfPcaps(t *testing.T, srcDir, dir, keys string) []string {
	t.Helper()
	const (
		firstSeq = 20000
		firstTS  = 160000
		// tsStep is far more than one event lasts (140 ms = 1120 ticks).
		tsStep = 8000
	)
	seq := uint16(firstSeq)
	names := make([]string, 0, len(keys))
	for i, key := range keys {
		src, err := dtmfPcapName(key)
		require.NoError(t, err)
		f, err := readPcap(filepath.Join(srcDir, src))
		require.NoError(t, err)
		origFirst := binary.BigEndian.Uint16(f.packets[0].data[f.packets[0].rtpOff+2:])
		var last uint16
		for _, p := range f.packets {
			rtp := p.data[p.rtpOff:]
			if rtp[1]&0x7f != 101 {
				t.Fatalf("%s: payload type %d, want telephone-event 101", src, rtp[1]&0x7f)
			}
			last = seq + (binary.BigEndian.Uint16(rtp[2:4]) - origFirst)
			binary.BigEndian.PutUint16(rtp[2:4], last)
			binary.BigEndian.PutUint32(rtp[4:8], uint32(firstTS+i*tsStep))
		}
		seq = last + 1
		name := fmt.Sprintf("key%d_%s", i, src)
		require.NoError(t, f.write(filepath.Join(dir, name)))
		names = append(names, name)
	}
	return names
}

// rfc4733Event is one telephone-event as a receiver would count it.
type rfc4733Event struct {
	key       rune
	timestamp uint32
}

// dtmfSink listens for RTP and collects RFC 4733 events (one per RTP
// timestamp, RFC 4733 §2.5.1), to check the captures the tests send.
type dtmfSink struct {
	conn   net.PacketConn
	mu     sync.Mutex
	events []rfc4733Event
	done   chan struct{}
}

func newDTMFSink(t *testing.T, port int) *dtmfSink {
	t.Helper()
	letGo(port)
	conn, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	s := &dtmfSink{conn: conn, done: make(chan struct{})}
	t.Cleanup(func() { _ = conn.Close(); <-s.done })
	go s.loop()
	return s
}

func (s *dtmfSink) loop() {
	defer close(s.done)
	const keys = "0123456789*#ABCD"
	buf := make([]byte, 2048)
	seen := map[uint32]bool{}
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, _, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < rtpHeaderLen+4 || buf[1]&0x7f != 101 {
			continue
		}
		ts := binary.BigEndian.Uint32(buf[4:8])
		ev := int(buf[rtpHeaderLen])
		if seen[ts] || ev >= len(keys) {
			continue
		}
		seen[ts] = true
		s.mu.Lock()
		s.events = append(s.events, rfc4733Event{key: rune(keys[ev]), timestamp: ts})
		s.mu.Unlock()
	}
}

func (s *dtmfSink) keys() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]rune, 0, len(s.events))
	for _, e := range s.events {
		out = append(out, e.key)
	}
	return string(out)
}
