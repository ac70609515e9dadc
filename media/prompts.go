package media

import (
	"embed"
	"encoding/binary"
	"fmt"
	"io/fs"
)

// The prompts are 8 kHz mono 16-bit PCM WAV files made by `make prompts`
// (media/Makefile.prompts) with espeak-ng and sox.
//
//go:embed prompts/zh/*.wav prompts/en/*.wav
var promptFS embed.FS

// Prompt names, as passed to Prompt.
const (
	PromptEnterExtension = "enter_extension"
	PromptInvalid        = "invalid"
	// PromptNotValid ends a direct dial whose extension is wrong: the
	// caller is not in the IVR and cannot try again in the same call.
	PromptNotValid    = "not_valid"
	PromptExpired     = "expired"
	PromptGoodbye     = "goodbye"
	PromptConnecting  = "connecting"
	PromptBusy        = "busy"
	PromptNoAnswer    = "no_answer"
	PromptUnavailable = "unavailable"

	// Consignee protection: what the caller hears when a call is refused
	// before the consignee rings, and the parts of the notice the
	// consignee hears before the bridge (see Notice).

	// PromptQuietHours: the consignee cannot be called now; try during
	// the day.
	PromptQuietHours = "quiet_hours"
	// PromptCapped: the call limit is reached.
	PromptCapped = "capped"
	// PromptNotAvailable: the consignee cannot take the call. Declined
	// and blocked calls both end with it, so that a block is not revealed.
	PromptNotAvailable = "not_available"
	// PromptNoticeMerchant: a call from a merchant.
	PromptNoticeMerchant = "notice_merchant"
	// PromptNoticeCourier: a call from a courier (a PSTN caller).
	PromptNoticeCourier = "notice_courier"
	// PromptNoticeOrder: about the order ending in (the digits follow).
	PromptNoticeOrder = "notice_order"
	// PromptRecorded: this call is recorded.
	PromptRecorded = "recorded"
	// PromptConfirmKeys: press 1 to take the call, 2 to decline, 9 to
	// block this caller.
	PromptConfirmKeys = "confirm_keys"
	// PromptDigit is the prefix of the spoken digits: PromptDigit+"0" is
	// zero, up to PromptDigit+"9".
	PromptDigit = "digit_"
)

// Prompt returns the samples (8 kHz mono) of the named prompt in language
// lang ("zh" or "en"). Unknown languages or names give ErrNoPrompt. Every
// call returns a fresh slice.
func Prompt(lang, name string) ([]int16, error) {
	if !fs.ValidPath(lang) || !fs.ValidPath(name) {
		return nil, fmt.Errorf("%w: %s/%s", ErrNoPrompt, lang, name)
	}
	b, err := promptFS.ReadFile("prompts/" + lang + "/" + name + ".wav")
	if err != nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrNoPrompt, lang, name)
	}
	pcm, err := decodeWAV(b)
	if err != nil {
		return nil, fmt.Errorf("media: prompt %s/%s: %w", lang, name, err)
	}
	return pcm, nil
}

// decodeWAV returns the samples of a RIFF WAVE file holding 8 kHz mono
// 16-bit PCM.
func decodeWAV(b []byte) ([]int16, error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: not a wav file", errBadWAV)
	}
	fmtOK := false
	for b = b[12:]; len(b) >= 8; {
		id, size := string(b[0:4]), int(binary.LittleEndian.Uint32(b[4:8]))
		b = b[8:]
		if size > len(b) {
			return nil, fmt.Errorf("%w: wav chunk %q truncated", errBadWAV, id)
		}
		body := b[:size]
		b = b[min(size+size%2, len(b)):]
		switch id {
		case "fmt ":
			if len(body) < 16 {
				return nil, fmt.Errorf("%w: wav fmt chunk too short", errBadWAV)
			}
			format := binary.LittleEndian.Uint16(body[0:2])
			channels := binary.LittleEndian.Uint16(body[2:4])
			rate := binary.LittleEndian.Uint32(body[4:8])
			depth := binary.LittleEndian.Uint16(body[14:16])
			if format != 1 || channels != 1 || rate != SampleRate || depth != 16 {
				return nil, fmt.Errorf("%w: wav is format %d, %d ch, %d Hz, %d bit; want 8 kHz mono 16-bit pcm", errBadWAV,
					format, channels, rate, depth)
			}
			fmtOK = true
		case "data":
			if !fmtOK {
				return nil, fmt.Errorf("%w: wav data before fmt chunk", errBadWAV)
			}
			pcm := make([]int16, len(body)/2)
			for i := range pcm {
				pcm[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			return pcm, nil
		}
	}
	return nil, fmt.Errorf("%w: wav has no data chunk", errBadWAV)
}
