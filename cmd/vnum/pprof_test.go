package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAdminPProf: /debug/pprof is off by default (the API's JSON 404);
// with admin.pprof it serves Go's profiles behind the admin token, and the
// API goes on as before.
func TestAdminPProf(t *testing.T) {
	c := adminConfig(t)
	s := openAdminStore(t, c)
	c.Admin.Token = adminToken

	off := startTestAdmin(t, c, s, callStats{})
	status, body := get(t, off+"/debug/pprof/", adminToken)
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, body, `"error"`)

	c.Admin.PProf = true
	on := startTestAdmin(t, c, s, callStats{})
	status, _ = get(t, on+"/debug/pprof/goroutine?debug=1", "")
	require.Equal(t, http.StatusUnauthorized, status, "profiles need the token")
	status, _ = get(t, on+"/debug/pprof/goroutine?debug=1", "wrong-token")
	require.Equal(t, http.StatusUnauthorized, status)
	status, body = get(t, on+"/debug/pprof/goroutine?debug=1", adminToken)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "goroutine profile:")
	status, body = get(t, on+"/debug/pprof", adminToken)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "heap")
	status, body = get(t, on+"/debug/pprof/cmdline", adminToken)
	require.Equal(t, http.StatusOK, status, body)

	status, body = get(t, on+"/v1/numbers", adminToken)
	require.Equal(t, http.StatusOK, status, body)
	status, _ = get(t, on+"//v1/numbers", adminToken)
	require.Equal(t, http.StatusNotFound, status, "the API's unclean paths are still a JSON 404")
}
