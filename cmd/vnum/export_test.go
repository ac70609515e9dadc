package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
)

// seedCDRs writes n call records of merchant m1 straight into the SQLite
// file dsn, in one statement, three a second from start.
func seedCDRs(t *testing.T, dsn string, n int, start time.Time) {
	t.Helper()
	db, err := sql.Open("sqlite3", dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	_, err = db.Exec(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
		INSERT INTO cdrs (id, call_id, node, merchant, binding_id, order_id, host, extension, direction, caller,
			caller_kind, started_at, answered_at, ended_at, talk_seconds, billed_minutes, fee, disposition, hangup_by,
			sip_status)
		SELECT printf('c_%016x', i), printf('call-%d@192.0.2.1', i), 'vnum-1', 'm1', 'b_0123456789abcdef', 'o-1',
			'17000000001', '1234', 'to_consignee', CASE i % 3 WHEN 0 THEN '=1+2' ELSE 'alice' END, 'account',
			? + (i / 3) * 1000000000, ? + (i / 3) * 1000000000 + 5000000000, ? + (i / 3) * 1000000000 + 66000000000,
			61, 2, 40000, 'answered', 'caller', 200
		FROM n`, n, start.UnixNano(), start.UnixNano(), start.UnixNano())
	require.NoError(t, err)
}

// TestCDRListStreamsSameOutput: `vnum cdr list` streams, and prints
// exactly what it printed when it gathered the records first: the same
// JSON (field names, layout), CSV and table.
func TestCDRListStreamsSameOutput(t *testing.T) {
	dsn := useTempStore(t)
	mustRun(t, "merchant", "add", "m1")
	seedCDRs(t, dsn, 7, time.Date(2026, 11, 15, 9, 30, 0, 0, time.UTC))
	s, err := binding.Open(context.Background(), binding.DriverSQLite, dsn)
	require.NoError(t, err)
	cs, err := s.ListCDRs(context.Background(), "", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.Len(t, cs, 7)
	for _, format := range []string{formatJSON, formatCSV, formatTable} {
		var want bytes.Buffer
		require.NoError(t, cdrRecords(cs).print(&want, format))
		require.Equal(t, want.String(), mustRun(t, "cdr", "list", "--format", format), format)
	}
	out := mustRun(t, "cdr", "list", "--format", "json")
	require.Contains(t, out, "[\n  {\n    \"id\": \"c_0000000000000000\",\n")
	require.Contains(t, out, `"caller": "=1+2"`)
	require.True(t, strings.HasSuffix(out, "  }\n]\n"))
}

// TestCDRListRefusesBackwardsWindow: a --from after --to is one clear line.
func TestCDRListRefusesBackwardsWindow(t *testing.T) {
	useTempStore(t)
	mustRun(t, "merchant", "add", "m1")
	out, errOut, err := runCLI(t, "cdr", "list", "--from", "2026-11-02", "--to", "2026-11-01T00:00:00Z")
	require.Error(t, err)
	require.Empty(t, out)
	require.Equal(t, "vnum: invalid usage: --from 2026-11-02 is after --to 2026-11-01T00:00:00Z\n", errOut)
	// The same time for both is an empty window, not an error.
	require.JSONEq(t, "[]", mustRun(t, "cdr", "list", "--from", "2026-11-02", "--to", "2026-11-02", "--format", "json"))
}

// TestCDRListStoreFailureMidway: when the store fails after rows were
// printed, the command exits non-zero with one line saying so, and the
// JSON it printed is an array without its "]", which no parser takes for
// a whole list.
func TestCDRListStoreFailureMidway(t *testing.T) {
	dsn := useTempStore(t)
	mustRun(t, "merchant", "add", "m1")
	seedCDRs(t, dsn, 100, time.Date(2026, 11, 15, 9, 30, 0, 0, time.UTC))
	db, err := sql.Open("sqlite3", dsn)
	require.NoError(t, err)
	// A start time that is not a number: SQLite sorts it after all others.
	_, err = db.Exec(`INSERT INTO cdrs (id, call_id, merchant, binding_id, order_id, host, extension, direction,
		caller, started_at) VALUES ('c_ffffffffffffffff', 'bad', 'm1', '', '', '', '', '', '', 'not a time')`)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	for _, format := range []string{formatJSON, formatCSV, formatTable} {
		out, errOut, err := runCLI(t, "cdr", "list", "--format", format)
		require.Error(t, err, format)
		require.True(t, strings.HasPrefix(errOut, "vnum: list cdrs: "), errOut)
		require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
		require.Contains(t, out, "2026-11-15T09:30:33Z", "%s: the rows read before the failure are printed", format)
		if format == formatJSON {
			require.False(t, json.Valid([]byte(out)))
		}
	}
}

// TestTableWriterLongTables: a table longer than its sample keeps the
// sample's column widths, and a later wider cell pushes the rest of its
// row aside instead of being cut.
func TestTableWriterLongTables(t *testing.T) {
	var out strings.Builder
	tw := &tableWriter{w: &out}
	require.NoError(t, tw.row([]string{"ID", "NAME", "N"}))
	for i := range tableSample + 5 {
		name := "short"
		if i == tableSample+2 {
			name = "a much longer name"
		}
		require.NoError(t, tw.row([]string{fmt.Sprint(i), name, ""}))
	}
	require.NoError(t, tw.flush())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, tableSample+6)
	// The sample is the header and rows 0 to 998.
	require.Equal(t, "ID   NAME   N", lines[0])
	require.Equal(t, "0    short  -", lines[1])
	require.Equal(t, "999  short  -", lines[1000])
	require.Equal(t, "1000  short  -", lines[1001], "wider than the sample's widest")
	require.Equal(t, "1001  short  -", lines[1002])
	require.Equal(t, "1002  a much longer name  -", lines[1003])
}

// TestAdminExportOutlastsServerTimeouts: an export through the admin
// server takes longer than its read and write timeouts, because its client
// reads slowly, and still completes: the streamed response renews its own
// write deadline while rows flow. The log line counts its rows. It does not
// run in parallel: its export would take CPU from the timing of the calls
// of TestDemo.
func TestAdminExportOutlastsServerTimeouts(t *testing.T) {
	c := adminConfig(t)
	s := openAdminStore(t, c)
	require.NoError(t, s.AddMerchant(context.Background(), "m1", "Shop One"))
	const n = 30000 // about 13 MB of JSON
	seedCDRs(t, c.Store.DSN, n, time.Date(2026, 11, 15, 9, 30, 0, 0, time.UTC))

	var logs lockedBuffer
	timeouts := adminTimeouts{readHeader: time.Second, read: 200 * time.Millisecond, write: 200 * time.Millisecond,
		stream: 10 * time.Second, idle: time.Second}
	stop, addr, err := startAdminTimeouts(context.Background(), c, s, nil, s.Ping, callStats{},
		slog.New(slog.NewJSONHandler(&logs, nil)), timeouts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, stop(context.Background())) })

	// A client with a small receive buffer that reads slowly: the
	// response takes well over a second.
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192) })
			return errors.Join(err, serr)
		},
	}).DialContext}}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/cdrs", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	began := time.Now()
	res, err := client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var body bytes.Buffer
	chunk := make([]byte, 32<<10)
	for {
		k, err := res.Body.Read(chunk)
		body.Write(chunk[:k])
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "after %d bytes", body.Len())
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(began)
	require.Greater(t, took, 4*timeouts.write, "the export outlasted the timeouts")

	// Whole: valid JSON, every record, first to last (decoding 13 MB
	// under the race detector would take seconds).
	require.True(t, json.Valid(body.Bytes()))
	require.Equal(t, n, bytes.Count(body.Bytes(), []byte(`{"id":"c_`)))
	require.True(t, bytes.HasPrefix(body.Bytes(), []byte(`[{"id":"c_0000000000000000",`)))
	require.Contains(t, body.String()[body.Len()-1000:], fmt.Sprintf(`{"id":"c_%016x",`, n-1))
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `"msg":"admin request","method":"GET","path":"/v1/cdrs","route":"GET /v1/cdrs","status":200`) &&
			strings.Contains(logs.String(), fmt.Sprintf(`"rows":%d`, n))
	}, 10*time.Second, 20*time.Millisecond, "logs: %s", logs.String())
	require.NotContains(t, logs.String(), "cut")
}

// TestAdminStopCutsExport: stopping the admin server in the middle of an
// export, once its grace time is over, cuts the export, and the log says
// so rather than "200". Not in parallel, as above.
func TestAdminStopCutsExport(t *testing.T) {
	c := adminConfig(t)
	s := openAdminStore(t, c)
	require.NoError(t, s.AddMerchant(context.Background(), "m1", "Shop One"))
	const n = 30000
	seedCDRs(t, c.Store.DSN, n, time.Date(2026, 11, 15, 9, 30, 0, 0, time.UTC))
	var logs lockedBuffer
	stop, addr, err := startAdmin(context.Background(), c, s, nil, s.Ping, callStats{},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	require.NoError(t, err)

	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/cdrs", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	_, err = io.ReadFull(res.Body, make([]byte, 64<<10))
	require.NoError(t, err)

	// The client reads no more; the server stops with no time to wait.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.Error(t, stop(ctx), "the export was still running")
	_, err = io.Copy(io.Discard, res.Body)
	require.Error(t, err, "the client sees the transfer cut")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `"msg":"admin request cut"`) },
		10*time.Second, 20*time.Millisecond, "logs: %s", logs.String())
	require.Regexp(t, `"cut":"(server stopping|client gone or server stopping): `, logs.String())
	require.NotContains(t, logs.String(), `"msg":"admin request","method":"GET","path":"/v1/cdrs"`)
}
