package media

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// protectionPrompts are the prompts of consignee protection.
var protectionPrompts = []string{PromptQuietHours, PromptCapped, PromptNotAvailable, PromptNoticeMerchant,
	PromptNoticeCourier, PromptNoticeOrder, PromptRecorded, PromptConfirmKeys,
	PromptDigit + "0", PromptDigit + "1", PromptDigit + "2", PromptDigit + "3", PromptDigit + "4",
	PromptDigit + "5", PromptDigit + "6", PromptDigit + "7", PromptDigit + "8", PromptDigit + "9"}

// TestProtectionPrompts: every prompt of consignee protection is there in
// both languages, spoken (not silent) and short enough for a phone.
func TestProtectionPrompts(t *testing.T) {
	t.Parallel()
	for _, lang := range []string{"zh", "en"} {
		for _, name := range protectionPrompts {
			pcm, err := Prompt(lang, name)
			require.NoError(t, err, "%s/%s", lang, name)
			require.Greater(t, len(pcm), SampleRate*4/10, "%s/%s: at least 0.4 s", lang, name)
			require.Less(t, len(pcm), 8*SampleRate, "%s/%s: at most 8 s", lang, name)
			peak := 0
			for _, s := range pcm {
				peak = max(peak, int(s), -int(s))
			}
			require.Greater(t, peak, 10000, "%s/%s: normalised, not silent", lang, name)
		}
	}
}

func TestClipSamples(t *testing.T) {
	t.Parallel()
	pcm := []int16{0, 1000, -1000, 32000, -32000, 7}
	raw := make([]byte, 2*len(pcm))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(s))
	}
	got, err := ClipSamples(ClipPCM16, raw)
	require.NoError(t, err)
	require.Equal(t, pcm, got)

	alaw := EncodeALaw(pcm)
	got, err = ClipSamples(ClipALaw, alaw)
	require.NoError(t, err)
	require.Equal(t, DecodeALaw(alaw), got)
	ulaw := EncodeULaw(pcm)
	got, err = ClipSamples(ClipULaw, ulaw)
	require.NoError(t, err)
	require.Equal(t, DecodeULaw(ulaw), got)
	for i := range pcm {
		require.InDelta(t, pcm[i], got[i], 1100, "µ-law keeps the sound")
	}

	_, err = ClipSamples(ClipPCM16, raw[:3])
	require.ErrorIs(t, err, ErrBadNotice)
	_, err = ClipSamples(3, raw)
	require.ErrorIs(t, err, ErrBadNotice)
}

// concat is what the notice of these prompts must be: them in order, a
// gap of silence between each two.
func concat(t *testing.T, lang string, head []int16, names ...string) []int16 {
	t.Helper()
	gap := make([]int16, samples(noticeGap))
	out := append([]int16(nil), head...)
	for _, n := range names {
		pcm, err := Prompt(lang, n)
		require.NoError(t, err)
		if len(out) > 0 {
			out = append(out, gap...)
		}
		out = append(out, pcm...)
	}
	return out
}

// TestNotice: the notice is who calls (the merchant's clip, "a merchant"
// or "a courier"), the order's last digits, the recording and the keys
// when asked for, in that order.
func TestNotice(t *testing.T) {
	t.Parallel()
	clip := DTMFTone('5', 0)
	clip = append(clip, 1, 2, 3, 4, 5)
	for name, c := range map[string]struct {
		n    Notice
		head []int16
		want []string
	}{
		"inform, a merchant": {Notice{OrderDigits: "0234"}, nil,
			[]string{PromptNoticeMerchant, PromptNoticeOrder, "digit_0", "digit_2", "digit_3", "digit_4"}},
		"the merchant's clip": {Notice{Clip: clip, OrderDigits: "9"}, clip, []string{PromptNoticeOrder, "digit_9"}},
		"a courier, confirm": {Notice{Clip: clip, Courier: true, Confirm: true}, nil,
			[]string{PromptNoticeCourier, PromptConfirmKeys}},
		"recorded": {Notice{Recorded: true, Confirm: true}, nil,
			[]string{PromptNoticeMerchant, PromptRecorded, PromptConfirmKeys}},
	} {
		for _, lang := range []string{"zh", "en"} {
			got, err := c.n.Samples(lang)
			require.NoError(t, err, name)
			require.Equal(t, concat(t, lang, c.head, c.want...), got, "%s (%s)", name, lang)
		}
	}
	_, err := Notice{OrderDigits: "12a4"}.Samples("zh")
	require.ErrorIs(t, err, ErrBadNotice)
	_, err = Notice{}.Samples("fr")
	require.ErrorIs(t, err, ErrNoPrompt)
}
