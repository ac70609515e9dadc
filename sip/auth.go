package sip

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Realm is the digest realm vnum challenges with; account secrets are
// H(user:realm:password) for this realm.
const Realm = "vnum"

// NonceTTL is how long a digest nonce is accepted (RFC 7616 §3.3 leaves it
// to the server); a request with an older nonce is challenged again with
// stale=true.
const NonceTTL = 5 * time.Minute

// failureWindow is the period over which authentication failures of one
// source are counted (README "SIP behaviour in short": "within a minute").
const failureWindow = time.Minute

// caller is who sends a new INVITE, as authorize found out: a merchant's
// account, or the carrier trunk (a PSTN caller) with its number when it
// has a valid one.
type caller struct {
	account Account
	trunk   bool
	// number is a trunk caller's number, validated and in E.164; "" when
	// it has none.
	number string
}

// walkKey is who the caller's wrong extensions count against (walkKey).
func (c caller) walkKey() string { return walkKey(c.account, c.trunk, c.number) }

// authenticator issues digest challenges and verifies credentials against
// the account secrets that Accounts holds. It also counts failures per source
// address and blocks sources that keep failing.
type authenticator struct {
	accounts   Accounts
	algorithms []string
	key        []byte
	now        func() time.Time

	mu       sync.Mutex
	maxFails int
	blockFor time.Duration
	used     map[string]nonceUse // nonce → highest nonce-count seen
	failures map[string][]time.Time
	blocked  map[string]time.Time
	sweptAt  time.Time
}

type nonceUse struct {
	nc      int
	expires time.Time
}

func newAuthenticator(accounts Accounts, algorithms []string, maxFails int, blockFor time.Duration) (*authenticator, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("nonce key: %w", err)
	}
	if len(algorithms) == 0 {
		algorithms = []string{"MD5"}
	}
	return &authenticator{
		accounts:   accounts,
		algorithms: algorithms,
		maxFails:   maxFails,
		blockFor:   blockFor,
		key:        key,
		now:        time.Now,
		used:       make(map[string]nonceUse),
		failures:   make(map[string][]time.Time),
		blocked:    make(map[string]time.Time),
	}, nil
}

// challenges returns one challenge header value per configured algorithm,
// in the configured order (RFC 8760 §2.4).
func (a *authenticator) challenges(stale bool) ([]string, error) {
	nonce, err := a.newNonce()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(a.algorithms))
	for _, alg := range a.algorithms {
		c := digest.Challenge{Realm: Realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, c.String())
	}
	return out, nil
}

// newNonce makes a self-verifying nonce: issue time, randomness and an HMAC
// over both, so no state is kept until a nonce is used.
func (a *authenticator) newNonce() (string, error) {
	buf := make([]byte, 16, 32)
	binary.BigEndian.PutUint64(buf[:8], uint64(a.now().Unix()))
	if _, err := rand.Read(buf[8:16]); err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, a.key)
	m.Write(buf)
	buf = append(buf, m.Sum(nil)[:16]...)
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// checkNonce reports whether the nonce is ours and whether it expired.
func (a *authenticator) checkNonce(nonce string) (valid, expired bool, issued time.Time) {
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != 32 {
		return false, false, time.Time{}
	}
	m := hmac.New(sha256.New, a.key)
	m.Write(raw[:16])
	if !hmac.Equal(m.Sum(nil)[:16], raw[16:]) {
		return false, false, time.Time{}
	}
	issued = time.Unix(int64(binary.BigEndian.Uint64(raw[:8])), 0)
	return true, a.now().Sub(issued) > NonceTTL, issued
}

// isBlocked reports whether a source address is currently blocked.
func (a *authenticator) isBlocked(source string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	until, ok := a.blocked[source]
	if !ok {
		return false
	}
	if a.now().After(until) {
		delete(a.blocked, source)
		return false
	}
	return true
}

// fail records an authentication failure of a source and blocks it once it
// reaches the configured count within a minute. It reports whether the
// source is now blocked.
func (a *authenticator) fail(source string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.sweepLocked(now)
	recent := a.failures[source][:0]
	for _, t := range a.failures[source] {
		if now.Sub(t) < failureWindow {
			recent = append(recent, t)
		}
	}
	recent = append(recent, now)
	a.failures[source] = recent
	if a.maxFails > 0 && len(recent) >= a.maxFails {
		a.blocked[source] = now.Add(a.blockFor)
		delete(a.failures, source)
		return true
	}
	return false
}

// sweepLocked drops expired nonce uses, old failures and ended blocks so
// the maps stay bounded by recent traffic.
func (a *authenticator) sweepLocked(now time.Time) {
	if now.Sub(a.sweptAt) < 30*time.Second {
		return
	}
	a.sweptAt = now
	for n, u := range a.used {
		if now.After(u.expires) {
			delete(a.used, n)
		}
	}
	for s, ts := range a.failures {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= failureWindow {
			delete(a.failures, s)
		}
	}
	for s, until := range a.blocked {
		if now.After(until) {
			delete(a.blocked, s)
		}
	}
}

// verify checks the credentials header value of a request sent to ruri.
// It returns the authenticated account, or ErrNoCredentials /
// ErrStaleNonce (challenge again), ErrBadCredentials / ErrReplay (refuse
// with 403), or ErrBadRequest when the credentials sign another URI.
func (a *authenticator) verify(ctx context.Context, method string, ruri sip.Uri, header string) (Account, error) {
	if header == "" {
		return Account{}, ErrNoCredentials
	}
	cr, err := digest.ParseCredentials(header)
	if err != nil {
		return Account{}, fmt.Errorf("%w: %v", ErrBadCredentials, err)
	}
	// The digest covers its uri, not the Request-URI: unless the two are
	// one, a credential signed for one target would vouch for any other
	// (RFC 3261 §22.4, RFC 7616 §3.4.6). RFC 7616 §3.4.6 answers 400 Bad
	// Request: the request is malformed, not its sender unknown, so it is
	// no authentication failure either (no strike towards a block).
	if !sameURI(cr.URI, ruri) {
		return Account{}, fmt.Errorf("%w: digest uri %q is not the Request-URI", ErrBadRequest, cr.URI)
	}
	valid, expired, issued := a.checkNonce(cr.Nonce)
	if !valid {
		// A nonce we never issued (another node's, or a restart's): a fresh
		// challenge, not a failure.
		return Account{}, ErrStaleNonce
	}
	if expired {
		return Account{}, ErrStaleNonce
	}
	alg := cr.Algorithm
	if alg == "" {
		alg = "MD5"
	}
	if !a.offers(alg) {
		return Account{}, fmt.Errorf("%w: algorithm %q not offered", ErrBadCredentials, alg)
	}
	if cr.Realm != Realm {
		return Account{}, fmt.Errorf("%w: realm %q", ErrBadCredentials, cr.Realm)
	}
	acct, err := a.accounts.Account(ctx, cr.Username)
	if err != nil {
		if errors.Is(err, ErrUnknownAccount) {
			return Account{}, fmt.Errorf("%w: unknown user", ErrBadCredentials)
		}
		return Account{}, err
	}
	var ha1 string
	var h func() hash.Hash
	switch strings.ToUpper(alg) {
	case "MD5":
		ha1, h = acct.HA1MD5, md5.New
	case "SHA-256":
		ha1, h = acct.HA1SHA256, sha256.New
	}
	ha2 := hexHash(h, method+":"+cr.URI)
	var want string
	switch cr.QOP {
	case "auth":
		want = hexHash(h, fmt.Sprintf("%s:%s:%08x:%s:auth:%s", ha1, cr.Nonce, cr.Nc, cr.Cnonce, ha2))
	case "":
		want = hexHash(h, ha1+":"+cr.Nonce+":"+ha2)
	default:
		return Account{}, fmt.Errorf("%w: qop %q", ErrBadCredentials, cr.QOP)
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(cr.Response)), []byte(want)) != 1 {
		return Account{}, ErrBadCredentials
	}
	// Replay protection: with qop the nonce-count must grow for each use of
	// a nonce (RFC 7616 §3.4); without qop a nonce is good for one request.
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked(a.now())
	u, seen := a.used[cr.Nonce]
	if seen && (cr.QOP == "" || cr.Nc <= u.nc) {
		return Account{}, ErrReplay
	}
	a.used[cr.Nonce] = nonceUse{nc: cr.Nc, expires: issued.Add(NonceTTL + time.Minute)}
	return acct, nil
}

// sameURI reports whether the digest's uri names the Request-URI's target:
// the same scheme, user, host and port, scheme and host compared without
// case (RFC 3261 §19.1.4). Parameters are compared when the signed uri
// has any; a uri signed without them is taken, since sipgo's client (and
// others) signs Request-URI.Addr(), the URI less its parameters.
func sameURI(signed string, ruri sip.Uri) bool {
	if signed == ruri.String() {
		return true
	}
	var u sip.Uri
	if err := sip.ParseUri(signed, &u); err != nil {
		return false
	}
	if !strings.EqualFold(u.Scheme, ruri.Scheme) || u.User != ruri.User ||
		!strings.EqualFold(u.Host, ruri.Host) || u.Port != ruri.Port {
		return false
	}
	if u.UriParams == nil || u.UriParams.Length() == 0 {
		return true
	}
	return ruri.UriParams != nil && u.UriParams.String() == ruri.UriParams.String()
}

func (a *authenticator) offers(alg string) bool {
	for _, x := range a.algorithms {
		if strings.EqualFold(x, alg) {
			return true
		}
	}
	return false
}

func hexHash(h func() hash.Hash, s string) string {
	x := h()
	x.Write([]byte(s))
	return hex.EncodeToString(x.Sum(nil))
}

// HA1 computes H(user:realm:password) for an algorithm ("MD5" or
// "SHA-256"), the secret an account store keeps instead of the password.
func HA1(alg, user, password string) string {
	if strings.EqualFold(alg, "SHA-256") {
		return hexHash(sha256.New, user+":"+Realm+":"+password)
	}
	return hexHash(md5.New, user+":"+Realm+":"+password)
}

// digestUser is the user name an Authorization header claims, as a log
// line names it ("" when the header does not parse).
func digestUser(header string) string {
	cr, err := digest.ParseCredentials(header)
	if err != nil {
		return ""
	}
	return maskNumbers(logValue(cr.Username))
}

// setLimits changes how many failures within a minute block a source, and
// for how long; failures counted so far stay.
func (a *authenticator) setLimits(maxFails int, blockFor time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.maxFails, a.blockFor = maxFails, blockFor
}
