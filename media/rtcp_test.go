package media

import (
	"testing"

	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"
)

func TestScrubRTCP(t *testing.T) {
	t.Parallel()
	sr := &rtcp.SenderReport{SSRC: 0x1111, NTPTime: 42, RTPTime: 160, PacketCount: 5, OctetCount: 800}
	sdes := &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 0x1111, Items: []rtcp.SourceDescriptionItem{
		{Type: rtcp.SDESCNAME, Text: "alice@192.168.1.20"},
		{Type: rtcp.SDESName, Text: "Alice Merchant"},
		{Type: rtcp.SDESPhone, Text: "13800138000"},
	}}}}
	app := &rtcp.ApplicationDefined{SSRC: 0x1111, Name: "ABCD", Data: []byte("secret!!")}
	bye := &rtcp.Goodbye{Sources: []uint32{0x1111}, Reason: "alice hung up"}
	in, err := rtcp.Marshal([]rtcp.Packet{sr, sdes, app, bye})
	require.NoError(t, err)

	out, err := scrubRTCP(in)
	require.NoError(t, err)
	for _, leak := range []string{"alice", "192.168", "Alice", "13800138000", "secret"} {
		require.NotContains(t, string(out), leak)
	}
	pkts, err := rtcp.Unmarshal(out)
	require.NoError(t, err)
	require.Len(t, pkts, 3, "SR, SDES and BYE; APP dropped")
	require.Equal(t, sr, pkts[0], "reports pass unchanged")
	got := pkts[1].(*rtcp.SourceDescription)
	require.Equal(t, uint32(0x1111), got.Chunks[0].Source)
	require.Equal(t, []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "vnum"}}, got.Chunks[0].Items)
	require.Equal(t, []uint32{0x1111}, pkts[2].(*rtcp.Goodbye).Sources)

	_, err = scrubRTCP([]byte{0x81, 0xc8, 0x00})
	require.Error(t, err, "junk is dropped")
}

func FuzzScrubRTCP(f *testing.F) {
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1}, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 1, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "x@y"}}}}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rr)
	f.Add([]byte{0x80, 0xc9, 0x00, 0x01, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := scrubRTCP(b)
		if err != nil {
			return
		}
		if _, err := rtcp.Unmarshal(out); err != nil {
			t.Fatalf("scrubbed RTCP does not parse: %v", err)
		}
	})
}
