package media

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// feedPCM encodes pcm for codec and feeds it to a detector in 20 ms packets.
func feedPCM(t *testing.T, det *ToneDetector, codec string, pcm []int16) string {
	t.Helper()
	enc := EncodeULaw
	if codec == "PCMA" {
		enc = EncodeALaw
	}
	var got []rune
	for i := 0; i < len(pcm); i += frameSamples {
		if k, ok := det.Feed(enc(pcm[i:min(i+frameSamples, len(pcm))])); ok {
			got = append(got, k)
		}
	}
	return string(got)
}

func silence(d time.Duration) []int16 { return make([]int16, samples(d)) }

func keyed(keys string, on, off time.Duration) []int16 {
	var pcm []int16
	for _, k := range keys {
		pcm = append(pcm, DTMFTone(k, on)...)
		pcm = append(pcm, silence(off)...)
	}
	return pcm
}

// scaled returns pcm at gain g, with white noise of amplitude noise added.
func scaled(pcm []int16, g float64, noise int) []int16 {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]int16, len(pcm))
	for i, s := range pcm {
		v := float64(s)*g + float64(rng.IntN(2*noise+1)-noise)
		out[i] = int16(max(math.MinInt16, min(math.MaxInt16, v)))
	}
	return out
}

func TestToneDetector(t *testing.T) {
	t.Parallel()
	const all = "0123456789*#ABCD"
	tests := map[string]struct {
		pcm  []int16
		want string
	}{
		"all keys 100 ms":         {pcm: keyed(all, 100*time.Millisecond, 60*time.Millisecond), want: all},
		"short 50 ms tones":       {pcm: keyed("159#", 50*time.Millisecond, 50*time.Millisecond), want: "159#"},
		"same key twice with gap": {pcm: keyed("77", 80*time.Millisecond, 80*time.Millisecond), want: "77"},
		"one long tone":           {pcm: keyed("3", 2*time.Second, 0), want: "3"},
		"quiet, -27 dBFS":         {pcm: scaled(keyed("258", 60*time.Millisecond, 60*time.Millisecond), 0.1, 0), want: "258"},
		"noisy, 20 dB SNR":        {pcm: scaled(keyed("*0#", 60*time.Millisecond, 60*time.Millisecond), 1, 1600), want: "*0#"},
		"noise only":              {pcm: scaled(silence(time.Second), 1, 8000), want: ""},
		"too short 20 ms":         {pcm: keyed("3", 20*time.Millisecond, 100*time.Millisecond), want: ""},
		"silence":                 {pcm: silence(time.Second), want: ""},
		"ringback":                {pcm: Ringback(3 * time.Second), want: ""},
	}
	for _, codec := range []string{"PCMU", "PCMA"} {
		for name, tc := range tests {
			t.Run(codec+"/"+name, func(t *testing.T) {
				require.Equal(t, tc.want, feedPCM(t, NewToneDetector(codec), codec, tc.pcm))
			})
		}
	}
}

func TestToneDetectorIgnoresSpeech(t *testing.T) {
	t.Parallel()
	for _, lang := range []string{"zh", "en"} {
		for _, name := range promptNames {
			pcm, err := Prompt(lang, name)
			require.NoError(t, err)
			require.Empty(t, feedPCM(t, NewToneDetector("pcmu"), "PCMU", pcm), "%s/%s", lang, name)
		}
	}
}

func TestToneDetectorOtherCodec(t *testing.T) {
	t.Parallel()
	det := NewToneDetector("G729")
	_, ok := det.Feed(EncodeULaw(DTMFTone('1', time.Second)))
	require.False(t, ok)
}

func TestTones(t *testing.T) {
	t.Parallel()
	require.Nil(t, DTMFTone('x', time.Second))
	require.Len(t, DTMFTone('1', 100*time.Millisecond), 800)
	require.Empty(t, Ringback(-time.Second))

	rb := Ringback(6 * time.Second)
	require.Len(t, rb, 6*SampleRate)
	loud := func(p []int16) bool {
		for _, s := range p {
			if s > 1000 || s < -1000 {
				return true
			}
		}
		return false
	}
	require.True(t, loud(rb[:SampleRate]), "first second rings")
	require.False(t, loud(rb[SampleRate:5*SampleRate]), "then four seconds of silence")
	require.True(t, loud(rb[5*SampleRate:]), "then rings again")

	cycle := RingbackCycle()
	require.Len(t, cycle, 5*SampleRate, "one cadence")
	require.Equal(t, rb[:5*SampleRate], cycle, "the cycle every call shares is the tone")
	require.Equal(t, &cycle[0], &RingbackCycle()[0], "computed once, not per call")
	rb[0]++
	require.NotEqual(t, rb[0], cycle[0], "Ringback's slice is the caller's own")
}

// BenchmarkRingback is what a ringing call costs to get its tone: one
// shared cycle, where each call used to compute (and allocate) 5 s.
func BenchmarkRingback(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if len(RingbackCycle()) == 0 {
			b.Fatal("no tone")
		}
	}
}
