package binding

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/vnum/vnum/internal/digits"
)

var (
	// merchantIDRe is the shape of a merchant identifier.
	merchantIDRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	// userRe is the shape of a SIP account user name.
	userRe = regexp.MustCompile(`^[A-Za-z0-9_.+-]{1,64}$`)
	// mobileRe is an 11-digit mainland China mobile number.
	mobileRe = regexp.MustCompile(`^1[3-9][0-9]{9}$`)
	// e164Re is an E.164 number without its "+": a country code that does
	// not start with 0, 8 to 15 digits in all (ITU-T E.164 §6).
	e164Re = regexp.MustCompile(`^[1-9][0-9]{7,14}$`)
	// fixedLineRe is a mainland fixed-line number without the trunk prefix
	// 0: a two-digit area code (10 Beijing, 20-29) and 8 digits, or a
	// three-digit one (3xx-9xx) and 7 or 8 digits. Local numbers start with
	// 2-9: those starting 0 or 1 are prefixes and service codes.
	fixedLineRe = regexp.MustCompile(`^(?:(?:10|2[0-9])[2-9][0-9]{7}|[3-9][0-9]{2}[2-9][0-9]{6,7})$`)
)

// NormaliseHost returns a host number X in its 11-digit national form,
// accepting a +86 or 86 prefix.
func NormaliseHost(x string) (string, error) {
	s := stripSeparators(x)
	switch {
	case len(s) == 14 && strings.HasPrefix(s, "+86"):
		s = s[3:]
	case len(s) == 13 && strings.HasPrefix(s, "86"):
		s = s[2:]
	}
	if len(s) != 11 || !digits.Only(s) {
		return "", fmt.Errorf("%w host number %q: want 11 digits", ErrInvalid, x)
	}
	return s, nil
}

// NormaliseConsignee validates a phone number from outside (a consignee B,
// a PSTN caller) and returns it in E.164 form ("+8613800138000"). It
// accepts, with spaces and dashes ignored:
//   - a mainland mobile number, 11 digits, 1 then 3-9, with an optional
//     +86, 86 or 0086 prefix;
//   - a mainland fixed line with its area code: 0, the area code and the
//     local number (010 6234 5678, 0571 8765 4321), or the same after +86
//     or 0086 without the 0;
//   - another country's number in E.164: + (or 00), a country code that
//     does not start with 0, 8 to 15 digits in all.
//
// Whether the number is one of vnum's own host numbers needs the pool: the
// store checks that when it creates a binding. Its errors never quote the
// number, which must not reach a log.
func NormaliseConsignee(b string) (string, error) {
	s := stripSeparators(b)
	switch {
	case strings.HasPrefix(s, "+"):
	case strings.HasPrefix(s, "00"):
		s = "+" + s[2:]
	case strings.HasPrefix(s, "0"):
		// A national fixed-line number: the trunk prefix 0, then the area code.
		s = "+86" + s[1:]
	case len(s) == 13 && strings.HasPrefix(s, "86"):
		s = "+" + s
	case len(s) == 11 && strings.HasPrefix(s, "1"):
		s = "+86" + s
	default:
		return "", errConsignee
	}
	if !e164Re.MatchString(s[1:]) {
		return "", errConsignee
	}
	if national, ok := strings.CutPrefix(s, "+86"); ok {
		switch {
		case strings.HasPrefix(national, "1") && len(national) == 11:
			if !mobileRe.MatchString(national) {
				return "", fmt.Errorf("%w consignee: not a mobile number (11 digits, 1 then 3-9)", ErrInvalid)
			}
		case !fixedLineRe.MatchString(national) || strings.HasPrefix(national, "400") || strings.HasPrefix(national, "800"):
			// 400 and 800 numbers are companies' service lines, not
			// anyone's own phone.
			return "", fmt.Errorf("%w consignee: a +86 number must be a mobile number (11 digits, 1 then 3-9) "+
				"or a fixed line with its area code (010 6234 5678)", ErrInvalid)
		}
	}
	return s, nil
}

// errConsignee refuses a number that has none of the shapes
// NormaliseConsignee accepts.
var errConsignee = fmt.Errorf("%w consignee: want an 11-digit mobile number (13800138000), a fixed line "+
	"with its area code (010 6234 5678) or E.164 (+8613800138000)", ErrInvalid)

// stripSeparators removes the spaces and dashes people type in numbers.
func stripSeparators(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\t' {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// validMerchantID reports whether id is a well-formed merchant identifier.
func validMerchantID(id string) error {
	if !merchantIDRe.MatchString(id) {
		return fmt.Errorf("%w merchant id %q: want 1-64 of A-Z a-z 0-9 _ . -", ErrInvalid, id)
	}
	return nil
}

// validOrder reports whether an order identifier is acceptable.
func validOrder(o string) error {
	if o == "" || len(o) > 128 || strings.ContainsFunc(o, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w order %q: want 1-128 printable characters", ErrInvalid, o)
	}
	return nil
}
