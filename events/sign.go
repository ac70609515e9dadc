package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the header that signs each delivery:
// "t=<unix seconds>,v1=<hex of HMAC-SHA256(secret, "<t>.<body>")>". The
// time is the attempt's, so a receiver can refuse a replayed old request;
// the body is the same on every attempt.
const SignatureHeader = "Vnum-Signature"

// Tolerance is how old a signature's time may be before a receiver should
// refuse the request as a replay (Verify's rule).
const Tolerance = 5 * time.Minute

// Sign returns the Vnum-Signature header value of body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

// mac is HMAC-SHA256(secret, ts + "." + body).
func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	// ErrBadSignature reports a header that is malformed or whose
	// signature does not match the body and the secret.
	ErrBadSignature = errors.New("bad signature")
	// ErrStale reports a signature whose time is more than Tolerance from
	// now: a replay of an old request, or a clock far off.
	ErrStale = errors.New("signature too old or from the future")
)

// Verify checks a Vnum-Signature header value the way a receiver should:
// the HMAC of "<t>.<body>" under secret must match a v1 value (compared in
// constant time), and t must lie within Tolerance of now. Receivers in
// other languages do the same (README "Call events").
func Verify(secret, header string, body []byte, now time.Time) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: want t=<unix seconds>,v1=<hex>", ErrBadSignature)
	}
	want := mac(secret, ts, body)
	ok := false
	for _, s := range sigs {
		ok = hmac.Equal(s, want) || ok
	}
	if !ok {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(t, 0)); d > Tolerance || d < -Tolerance {
		return ErrStale
	}
	return nil
}
