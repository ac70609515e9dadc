package protection

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/testwav"
)

// wav builds a WAV file with a chunk before its data that a reader
// must skip.
func wav(tag, channels uint16, rate uint32, bits uint16, n int) []byte {
	return testwav.WAV(tag, channels, rate, bits, n, []byte("LIST\x04\x00\x00\x00INFO"))
}

func TestParseClip(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		b    []byte
		enc  Encoding
		long time.Duration
	}{
		"pcm 5 s":    {wav(1, 1, 8000, 16, 2*5*8000), EncodingPCM, 5 * time.Second},
		"alaw 1 s":   {wav(6, 1, 8000, 8, 8000), EncodingALaw, time.Second},
		"ulaw 2.5 s": {wav(7, 1, 8000, 8, 20000), EncodingULaw, 2500 * time.Millisecond},
		"one sample": {wav(1, 1, 8000, 16, 2), EncodingPCM, time.Second / 8000},
	} {
		clip, err := ParseClip(c.b)
		require.NoError(t, err, name)
		require.Equal(t, c.enc, clip.Encoding, name)
		require.Equal(t, c.long, clip.Duration(), name)
		back, err := ParseEncoding(clip.Encoding.String())
		require.NoError(t, err)
		require.Equal(t, c.enc, back)
	}

	extensible := wav(1, 1, 8000, 16, 100)
	// Turn the fmt chunk into WAVE_FORMAT_EXTENSIBLE with a PCM sub-format.
	ext := append([]byte(nil), extensible[:12]...)
	ext = append(ext, "fmt \x28\x00\x00\x00"...)
	body := append([]byte(nil), extensible[20:36]...)
	binary.LittleEndian.PutUint16(body[0:], 0xFFFE)
	body = append(body, 22, 0, 16, 0, 4, 0, 0, 0, 1, 0)
	body = append(body, make([]byte, 14)...)
	ext = append(ext, body...)
	ext = append(ext, extensible[36:]...)
	clip, err := ParseClip(ext)
	require.NoError(t, err)
	require.Equal(t, EncodingPCM, clip.Encoding)

	for name, c := range map[string]struct {
		b   []byte
		why string
	}{
		"not wav":       {[]byte("ID3\x03 an mp3 file"), "not a WAV file"},
		"empty":         {nil, "not a WAV file"},
		"16 kHz":        {wav(1, 1, 16000, 16, 100), "sampled at 16000 Hz"},
		"44.1 kHz":      {wav(1, 1, 44100, 16, 100), "sampled at 44100 Hz"},
		"stereo":        {wav(1, 2, 8000, 16, 100), "2 channels"},
		"8-bit pcm":     {wav(1, 1, 8000, 8, 100), "pcm16 with 8 bits a sample"},
		"float":         {wav(3, 1, 8000, 32, 100), "WAV format 3"},
		"gsm":           {wav(0x31, 1, 8000, 0, 100), "WAV format 49"},
		"too long":      {wav(1, 1, 8000, 16, 2*5*8000+2), "lasts 5.0 s"},
		"6 s of alaw":   {wav(6, 1, 8000, 8, 6*8000), "lasts 6.0 s"},
		"silent":        {wav(1, 1, 8000, 16, 0), "holds no sound"},
		"half a sample": {wav(1, 1, 8000, 16, 3), "half a sample"},
		"truncated":     {wav(1, 1, 8000, 16, 100)[:80], "cut short"},
		"no data":       {wav(1, 1, 8000, 16, 100)[:36], "no data"},
	} {
		_, err := ParseClip(c.b)
		require.ErrorIs(t, err, ErrBadClip, name)
		require.ErrorContains(t, err, c.why, name)
		require.ErrorContains(t, err, "want a WAV file, 8 kHz mono, 16-bit PCM, A-law or µ-law, at most 5 s", name)
	}
	_, err = ParseEncoding("mp3")
	require.ErrorIs(t, err, ErrBadClip)
}

func TestOrderDigits(t *testing.T) {
	t.Parallel()
	for order, want := range map[string]string{
		"order-100234": "0234",
		"20261130":     "1130",
		"A12":          "12",
		"7":            "7",
		"order-1001x":  "",
		"":             "",
		"订单9876":       "9876",
	} {
		require.Equal(t, want, OrderDigits(order), order)
	}
}
