package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The notice is what the consignee hears once they answer and before the
// call is bridged, when consignee protection announces calls: who calls
// (the merchant's own clip, or "a merchant", or "a courier" for a PSTN
// caller), the last digits of the order, that the call is recorded, and
// with confirm the keys to take, decline or block the call. It names no
// caller's account or number.

// Encodings of a merchant's clip, by the format tag of the WAV file it
// was uploaded in.
const (
	// ClipPCM16 is 16-bit signed little-endian linear PCM.
	ClipPCM16 uint16 = 1
	// ClipALaw is G.711 A-law, one byte a sample.
	ClipALaw uint16 = 6
	// ClipULaw is G.711 µ-law, one byte a sample.
	ClipULaw uint16 = 7
)

// ErrBadNotice means a notice or a clip cannot be built as given: an
// encoding that is not one of the three, half a sample, an order's digits
// that are not digits.
var ErrBadNotice = errors.New("media: bad notice")

// noticeGap is the silence between the parts of a notice, so that they
// do not run into each other.
const noticeGap = 250 * time.Millisecond

// ClipSamples returns the 8 kHz samples of a merchant's clip held as data
// in the given encoding (ClipPCM16, ClipALaw or ClipULaw).
func ClipSamples(encoding uint16, data []byte) ([]int16, error) {
	switch encoding {
	case ClipALaw:
		return DecodeALaw(data), nil
	case ClipULaw:
		return DecodeULaw(data), nil
	case ClipPCM16:
		if len(data)%2 != 0 {
			return nil, fmt.Errorf("%w: 16-bit clip of %d bytes", ErrBadNotice, len(data))
		}
		out := make([]int16, len(data)/2)
		for i := range out {
			out[i] = int16(binary.LittleEndian.Uint16(data[2*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: clip encoding %d", ErrBadNotice, encoding)
}

// Notice is what the consignee is told about a call before the bridge.
type Notice struct {
	// Clip is the merchant's own clip naming it (ClipSamples); nil says
	// "a merchant". It is not played for a courier.
	Clip []int16
	// Courier is set for a PSTN caller: "a courier".
	Courier bool
	// OrderDigits are the last digits of the order the call is about
	// (protection.OrderDigits); "" says nothing of the order.
	OrderDigits string
	// Recorded adds "this call is recorded".
	Recorded bool
	// Confirm ends the notice with the keys: 1 takes the call, 2
	// declines it, 9 blocks the caller.
	Confirm bool
}

// Samples returns the notice in language lang ("zh" or "en") as 8 kHz
// samples, its parts a short silence apart. An unknown language is
// ErrNoPrompt; order digits that are not digits are ErrBadNotice.
func (n Notice) Samples(lang string) ([]int16, error) {
	for _, d := range n.OrderDigits {
		if d < '0' || d > '9' {
			return nil, fmt.Errorf("%w: order digits %q", ErrBadNotice, n.OrderDigits)
		}
	}
	var parts []string
	var who []int16
	switch {
	case n.Courier:
		parts = append(parts, PromptNoticeCourier)
	case len(n.Clip) > 0:
		who = n.Clip
	default:
		parts = append(parts, PromptNoticeMerchant)
	}
	if n.OrderDigits != "" {
		parts = append(parts, PromptNoticeOrder)
		for _, d := range n.OrderDigits {
			parts = append(parts, PromptDigit+string(d))
		}
	}
	if n.Recorded {
		parts = append(parts, PromptRecorded)
	}
	if n.Confirm {
		parts = append(parts, PromptConfirmKeys)
	}
	gap := make([]int16, samples(noticeGap))
	out := append([]int16(nil), who...)
	for _, name := range parts {
		pcm, err := Prompt(lang, name)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 {
			out = append(out, gap...)
		}
		out = append(out, pcm...)
	}
	return out, nil
}
