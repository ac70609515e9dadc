package api_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding/api"
)

// seedCDRRows writes n call records of merchant m1 straight into the
// harness's SQLite file, in one statement, three a second from start; the
// ID of record i is c_ and i in 16 hex digits.
func seedCDRRows(t *testing.T, dsn string, n int, start time.Time) {
	t.Helper()
	db, err := sql.Open("sqlite3", dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	_, err = db.Exec(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
		INSERT INTO cdrs (id, call_id, node, merchant, binding_id, order_id, host, extension, direction, caller,
			caller_kind, started_at, ended_at, disposition, hangup_by, sip_status)
		SELECT printf('c_%016x', i), printf('call-%d@192.0.2.1', i), 'vnum-1', 'm1', 'b_0123456789abcdef', 'o-1',
			'17000000001', '1234', 'to_consignee', 'alice', 'account', ? + (i / 3) * 1000000000,
			? + (i / 3) * 1000000000 + 30000000000, 'no_answer', 'caller', 480
		FROM n`, n, start.UnixNano(), start.UnixNano())
	require.NoError(t, err)
}

// corruptCDR writes a record whose start time is not a number, which no
// listing can read: SQLite keeps the text in the INTEGER column, and sorts
// it after every number, so it is the last row of any listing.
func corruptCDR(t *testing.T, dsn string) {
	t.Helper()
	db, err := sql.Open("sqlite3", dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	_, err = db.Exec(`INSERT INTO cdrs (id, call_id, merchant, binding_id, order_id, host, extension, direction,
		caller, started_at) VALUES ('c_ffffffffffffffff', 'bad', 'm1', '', '', '', '', '', '', 'not a time')`)
	require.NoError(t, err)
}

// logLine waits for the harness's log line with message msg (the server
// logs a request after its response is done) and returns it.
func logLine(t *testing.T, h *harness, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sc := bufio.NewScanner(strings.NewReader(h.log.String()))
		for sc.Scan() {
			var line map[string]any
			require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
			if line["msg"] == msg {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line in the log:\n%s", msg, h.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// getRaw GETs path with the harness's token and returns the status and
// the body as far as it came, with the error that ended reading it.
func getRaw(t *testing.T, h *harness, path, accept string) (int, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.token)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := h.srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, body, err
}

// TestStoreFailureMidStreamCutsResponse: when the store fails after the
// first rows went out, the response cannot turn into an error status, so
// it is cut: the client's transfer ends early (no end of the chunked
// body), the JSON array has no "]", and the log says "cut", with the rows
// written and the store's error, at error level, not "200".
func TestStoreFailureMidStreamCutsResponse(t *testing.T) {
	t.Parallel()
	for name, accept := range map[string]string{"json": "application/json", "csv": "text/csv"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			seedAPI(t, h)
			const n = 2000 // well over the stream's buffer: the response has begun
			seedCDRRows(t, h.dsn, n, time.Date(2026, 11, 10, 1, 0, 0, 0, time.UTC))
			corruptCDR(t, h.dsn)

			status, body, err := getRaw(t, h, "/v1/cdrs", accept)
			require.Equal(t, http.StatusOK, status)
			require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the client sees a transfer cut short")
			require.Greater(t, len(body), 0)
			if accept == "application/json" {
				require.False(t, json.Valid(body), "a cut array is not valid JSON")
				require.True(t, strings.HasPrefix(string(body), `[{"id":"c_0000000000000000"`))
			}
			line := logLine(t, h, "admin request cut")
			t.Log(line)
			require.Equal(t, "ERROR", line["level"])
			require.EqualValues(t, 200, line["status"])
			require.EqualValues(t, n, line["rows"], "every good row was written")
			require.Contains(t, line["cut"], "store: list cdrs:")
			require.Contains(t, line["cut"], "started_at")
			require.NotContains(t, h.log.String(), `"msg":"admin request","method":"GET","path":"/v1/cdrs"`)
		})
	}
}

// TestStoreFailureBeforeFirstRowIsAnError: a store that fails before any
// row went out still gets an ordinary error answer, nothing half-written.
func TestStoreFailureBeforeFirstRowIsAnError(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	corruptCDR(t, h.dsn)
	for _, accept := range []string{"application/json", "text/csv"} {
		r := h.do(request{method: "GET", path: "/v1/cdrs", accept: accept})
		require.Equal(t, http.StatusInternalServerError, r.status, "%s", r.body)
		require.Equal(t, "internal error", r.object(t)["error"])
		require.Empty(t, r.header.Get("Link"))
		require.Empty(t, r.header.Get("Content-Disposition"))
	}
}

// TestClientGoneMidStreamIsLogged: a client that hangs up in the middle
// of an export stops it, and the log line says it was cut and why.
func TestClientGoneMidStreamIsLogged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	const n = 30000 // some 10 MB of JSON: more than the sockets hold
	seedCDRRows(t, h.dsn, n, time.Date(2026, 11, 10, 1, 0, 0, 0, time.UTC))

	req, err := http.NewRequest(http.MethodGet, h.srv.URL+"/v1/cdrs", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.token)
	res, err := h.srv.Client().Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	_, err = io.ReadFull(res.Body, make([]byte, 64<<10))
	require.NoError(t, err)
	require.NoError(t, res.Body.Close()) // before the end: the connection closes

	line := logLine(t, h, "admin request cut")
	t.Log(line)
	require.Equal(t, "WARN", line["level"])
	require.Contains(t, line["cut"], "client gone")
	require.Less(t, line["rows"], float64(n))
}

// TestStalledClientIsCut: a client that stops reading is let go after
// StreamIdle, which stands in for the server's write timeout.
func TestStalledClientIsCut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *api.Options) { o.StreamIdle = 300 * time.Millisecond })
	seedAPI(t, h)
	const n = 30000
	seedCDRRows(t, h.dsn, n, time.Date(2026, 11, 10, 1, 0, 0, 0, time.UTC))

	// A client with a small receive buffer that reads the head of the
	// response and then nothing.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.DialContext(context.Background(), "tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, conn.Close()) })
	_, err = fmt.Fprintf(conn, "GET /v1/cdrs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n", h.token)
	require.NoError(t, err)
	head := make([]byte, 1024)
	_, err = io.ReadFull(conn, head)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(head), "HTTP/1.1 200 OK"), "%s", head)

	line := logLine(t, h, "admin request cut")
	t.Log(line)
	require.Contains(t, line["cut"], "client stalled: took nothing for 300ms")
	require.Less(t, line["rows"], float64(n))
}
