package binding

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	// merchantIDRe is the shape of a merchant identifier.
	merchantIDRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	// userRe is the shape of a SIP account user name.
	userRe = regexp.MustCompile(`^[A-Za-z0-9_.+-]{1,64}$`)
	// mobileRe is an 11-digit mainland China mobile number.
	mobileRe = regexp.MustCompile(`^1[3-9][0-9]{9}$`)
	// e164Re is an E.164 number without its "+".
	e164Re = regexp.MustCompile(`^[1-9][0-9]{7,14}$`)
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
	if len(s) != 11 || !allDigits(s) {
		return "", fmt.Errorf("%w host number %q: want 11 digits", ErrInvalid, x)
	}
	return s, nil
}

// NormaliseConsignee validates a consignee number B and returns it in E.164
// form ("+8613800138000"). It accepts an 11-digit mainland mobile number
// with an optional +86, 86 or 0086 prefix, or any E.164 number; spaces and
// dashes are ignored.
func NormaliseConsignee(b string) (string, error) {
	s := stripSeparators(b)
	switch {
	case strings.HasPrefix(s, "0086"):
		s = "+86" + s[4:]
	case len(s) == 13 && strings.HasPrefix(s, "86"):
		s = "+" + s
	case len(s) == 11 && !strings.HasPrefix(s, "+"):
		s = "+86" + s
	}
	if !strings.HasPrefix(s, "+") || !e164Re.MatchString(s[1:]) {
		return "", fmt.Errorf("%w consignee: want an 11-digit mobile number or E.164 (+8613800138000)", ErrInvalid)
	}
	if national, ok := strings.CutPrefix(s, "+86"); ok && len(national) == 11 && strings.HasPrefix(national, "1") &&
		!mobileRe.MatchString(national) {
		return "", fmt.Errorf("%w consignee: not a mobile number", ErrInvalid)
	}
	return s, nil
}

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
