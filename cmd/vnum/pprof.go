package main

import (
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strings"
)

// pprofPrefix is where admin.pprof serves Go's profiles.
const pprofPrefix = "/debug/pprof"

// withPProf serves Go's /debug/pprof handlers in front of the admin API, so
// that an operator can profile a live node (`go tool pprof
// http://127.0.0.1:8080/debug/pprof/profile`). When admin.token is set the
// profiles need it like every /v1 call: a profile shows the code and, in
// heap and goroutine dumps, live data. It routes by prefix with a plain
// function, not a ServeMux, whose path cleaning would answer the API's
// unclean paths with redirects.
func withPProf(api http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if path != pprofPrefix && !strings.HasPrefix(path, pprofPrefix+"/") {
			api.ServeHTTP(w, r)
			return
		}
		if token != "" && !bearerMatches(r.Header.Get("Authorization"), token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vnum"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		switch strings.TrimPrefix(path, pprofPrefix+"/") {
		case "cmdline":
			pprof.Cmdline(w, r)
		case "profile":
			pprof.Profile(w, r)
		case "symbol":
			pprof.Symbol(w, r)
		case "trace":
			pprof.Trace(w, r)
		default:
			// The index, and the named profiles: heap, goroutine, allocs,
			// block, mutex, threadcreate.
			if path == pprofPrefix {
				r.URL.Path = pprofPrefix + "/"
			}
			pprof.Index(w, r)
		}
	})
}

// bearerMatches reports, in constant time, whether an Authorization
// header carries the bearer token.
func bearerMatches(header, token string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}
