package protection

import "errors"

// Sentinel errors of the protection package; callers test them with
// errors.Is. Their messages are meant for the operator or the platform
// that sent the value: each names what was wrong in one line.
var (
	// ErrInvalid reports a value that does not parse: a quiet window, an
	// announce mode, a negative cap.
	ErrInvalid = errors.New("invalid protection")
	// ErrLooser reports a merchant's protection that would be looser than
	// the platform's in some part: a merchant may only make it stricter.
	ErrLooser = errors.New("looser than the platform's protection")
	// ErrBadClip reports a merchant's announcement that is not an 8 kHz
	// mono WAV (16-bit PCM, A-law or µ-law) of at most MaxClip.
	ErrBadClip = errors.New("announcement refused")
)
