package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vnum/vnum/binding"
)

// cursorKind tells apart the cursors of the listings, so that a cursor of
// one listing is refused by another rather than read as a place in it.
type cursorKind byte

// The listings that page.
const (
	cdrCursor     cursorKind = 'c'
	bindingCursor cursorKind = 'b'
)

// maxCursor bounds the length of a cursor the API reads; the ones it
// gives out are about 50 characters.
const maxCursor = 200

// errBadCursor answers a cursor the API did not give out for the listing.
var errBadCursor = badRequest("cursor: not a cursor of this listing; pass on the cursor of the Link header as it is")

// parsePage reads a listing's limit and cursor query parameters: without
// limit the listing is not paged and streams whole; with it, a page holds
// that many rows and its Link header names the next one.
func parsePage(q url.Values, kind cursorKind) (binding.Page, error) {
	var p binding.Page
	if q.Has("limit") {
		v := q.Get("limit")
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > binding.MaxPageLimit {
			return p, badRequest(fmt.Sprintf("limit %q: want a whole number from 1 to %d", v, binding.MaxPageLimit))
		}
		p.Limit = n
	}
	if q.Has("cursor") {
		k, err := decodeCursor(kind, q.Get("cursor"))
		if err != nil {
			return p, err
		}
		p.After = k
	}
	return p, nil
}

// encodeCursor returns the cursor of the page that starts after k: the
// key in base64url, opaque to clients, who pass it back as it is.
func encodeCursor(kind cursorKind, k binding.Key) string {
	raw := string(kind) + strconv.FormatInt(k.At.UnixNano(), 10) + "." + k.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodeCursor reads a cursor of encodeCursor, or returns errBadCursor.
func decodeCursor(kind cursorKind, cursor string) (binding.Key, error) {
	if len(cursor) > maxCursor {
		return binding.Key{}, errBadCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) < 2 || cursorKind(raw[0]) != kind {
		return binding.Key{}, errBadCursor
	}
	ns, id, ok := strings.Cut(string(raw[1:]), ".")
	at, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || id == "" || strings.IndexFunc(id, notIDRune) >= 0 {
		return binding.Key{}, errBadCursor
	}
	return binding.Key{At: time.Unix(0, at).UTC(), ID: id}, nil
}

// notIDRune reports a rune no row ID contains: IDs are printable ASCII.
func notIDRune(r rune) bool { return r <= ' ' || r > '~' }

// nextLink is the Link header (RFC 8288) of a page that has a next one:
// the request's own path and query with the next page's cursor. It is a
// relative reference, resolved against the request's URL, so it stays
// right behind a proxy that changes the scheme or the host.
func nextLink(r *http.Request, kind cursorKind, next binding.Key) string {
	q := r.URL.Query()
	q.Set("cursor", encodeCursor(kind, next))
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	return "<" + u.String() + `>; rel="next"`
}
