package sip

import (
	"fmt"
	"strings"

	"github.com/vnum/vnum/internal/digits"
)

// Dialled is what the user part of an INVITE's Request-URI asks for: a host
// number X and, for the direct forms, the extension E.
type Dialled struct {
	Host      string
	Extension string
}

// ParseDialled parses the user part of a Request-URI: X with an optional
// +86/86 prefix, and the direct forms X;ext=E, X-E and X,E (README "SIP behaviour in short"). The
// host number must have 11 digits; an extension has only DTMF digits.
func ParseDialled(user string, uriExt string) (Dialled, error) {
	u := strings.TrimSpace(user)
	ext := uriExt
	// The index is taken in u itself: strings.ToLower turns each invalid
	// UTF-8 byte into U+FFFD (three bytes), so an index found in the
	// lowered copy does not fit u (it once crashed vnum from the network).
	if i := indexFoldASCII(u, ";ext="); i >= 0 {
		ext, u = u[i+5:], u[:i]
	} else if i := strings.IndexAny(u, "-,"); i >= 0 {
		ext, u = u[i+1:], u[:i]
	}
	u = strings.TrimPrefix(u, "+")
	if len(u) == 13 && strings.HasPrefix(u, "86") {
		u = u[2:]
	}
	if len(u) != 11 || !digits.Only(u) {
		return Dialled{}, fmt.Errorf("%w: dialled %q is not an 11-digit number", ErrNotHostNumber, user)
	}
	// Phones that dial "X,E" may send more pause characters.
	ext = strings.Trim(ext, ",;pPwW")
	if ext != "" && !digits.Only(ext) {
		return Dialled{}, fmt.Errorf("%w: extension %q is not digits", ErrBadRequest, ext)
	}
	return Dialled{Host: u, Extension: ext}, nil
}

// indexFoldASCII is the byte index in s of the first match of the ASCII
// string sub, letters compared without case; -1 when there is none. It
// compares bytes, so it never changes s's length the way strings.ToLower
// does for invalid UTF-8, and a non-ASCII byte never matches an ASCII one.
func indexFoldASCII(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if asciiEqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

func asciiEqualFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// sanitizeHeaderValue strips CR, LF and NUL from text that came from outside
// before it goes into a header (sipgo v1.7.3 does not check them).
func sanitizeHeaderValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return -1
		}
		return r
	}, s)
}
