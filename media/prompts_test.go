package media

import (
	"testing"

	"github.com/stretchr/testify/require"
)

var promptNames = []string{
	PromptEnterExtension, PromptInvalid, PromptExpired, PromptGoodbye,
	PromptConnecting, PromptBusy, PromptNoAnswer, PromptUnavailable,
}

func TestPrompt(t *testing.T) {
	t.Parallel()
	for _, lang := range []string{"zh", "en"} {
		for _, name := range promptNames {
			t.Run(lang+"/"+name, func(t *testing.T) {
				pcm, err := Prompt(lang, name)
				require.NoError(t, err)
				require.Greater(t, len(pcm), SampleRate/2, "at least half a second")
				require.Less(t, len(pcm), 8*SampleRate, "at most 8 s")
				peak := 0
				for _, s := range pcm {
					peak = max(peak, int(s), -int(s))
				}
				require.Greater(t, peak, 10000, "normalised, not silent")

				again, err := Prompt(lang, name)
				require.NoError(t, err)
				pcm[0]++
				require.NotEqual(t, pcm[0], again[0], "each call returns its own slice")
			})
		}
	}
	for name, args := range map[string][2]string{
		"unknown name":     {"zh", "welcome"},
		"unknown language": {"fr", "goodbye"},
		"path traversal":   {"zh", "../en/goodbye"},
		"empty":            {"", ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Prompt(args[0], args[1])
			require.ErrorIs(t, err, ErrNoPrompt)
		})
	}
}

func TestDecodeWAV(t *testing.T) {
	t.Parallel()
	hdr := func(rate uint32, ch, bits uint16) []byte {
		b := []byte("RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00")
		b = append(b, byte(ch), byte(ch>>8))
		b = append(b, byte(rate), byte(rate>>8), byte(rate>>16), byte(rate>>24))
		b = append(b, 0, 0, 0, 0, 2, 0, byte(bits), byte(bits>>8))
		return b
	}
	good := append(hdr(8000, 1, 16), []byte("data\x04\x00\x00\x00\x01\x00\xff\xff")...)
	pcm, err := decodeWAV(good)
	require.NoError(t, err)
	require.Equal(t, []int16{1, -1}, pcm)

	for name, b := range map[string][]byte{
		"empty":     nil,
		"not riff":  []byte("RIFX\x00\x00\x00\x00WAVE"),
		"stereo":    append(hdr(8000, 2, 16), []byte("data\x00\x00\x00\x00")...),
		"16 kHz":    append(hdr(16000, 1, 16), []byte("data\x00\x00\x00\x00")...),
		"truncated": append(hdr(8000, 1, 16), []byte("data\xff\x00\x00\x00")...),
		"no data":   hdr(8000, 1, 16),
		"no fmt":    []byte("RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeWAV(b)
			require.ErrorIs(t, err, errBadWAV)
		})
	}
}
