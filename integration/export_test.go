package integration

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the test's own connection to the PostgreSQL store
	_ "github.com/mattn/go-sqlite3"    // the test's own connection to the SQLite store
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/pgtest"
)

// exportRowsVar sets how many call records TestExportsStayFlat writes
// into the SQLite store (PostgreSQL, whose rows come through the same
// code, gets a fifth). CI sets it to a million, which takes the test
// about a minute on two cores; without it the test exports 200,000, which
// the memory bounds tell from a gathered export as well.
const exportRowsVar = "VNUMTEST_EXPORT_ROWS"

// defaultExportRows is the SQLite export's size without exportRowsVar.
const defaultExportRows = 200_000

// exportRows returns the sizes of the SQLite and PostgreSQL exports.
func exportRows(t *testing.T) (sqlite, postgres int) {
	t.Helper()
	n := defaultExportRows
	if v := os.Getenv(exportRowsVar); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err, exportRowsVar)
		require.GreaterOrEqual(t, n, 1000, exportRowsVar)
	}
	return n, n / 5
}

// Memory bounds of an export, in KiB of peak resident memory (VmHWM) of
// the exporting process. A million records held in memory
// take several hundred MiB (the slices this replaced took 1.5 to 2.8
// GiB); streamed, the peak is the process's own size plus a few buffers,
// whatever the number of rows.
const (
	// exportCeilingKiB bounds the whole process.
	exportCeilingKiB = 100 << 10
	// exportGrowthKiB bounds what an export of every row adds to the peak
	// of one of a few rows.
	exportGrowthKiB = 40 << 10
)

// exportStart is when the first seeded call started; three calls start
// in each second after it.
var exportStart = time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)

// TestExportsStayFlat exports a store of a million call records
// (exportRowsVar; a fifth on PostgreSQL) through the built binary, as a
// merchant or an operator would: `vnum cdr list --format json` and `--format csv`, and GET
// /v1/cdrs of a running `vnum serve`, in JSON and CSV. Each export comes
// out whole, every record once and in order (exportcheck parses it), and
// the exporting process's peak memory stays flat: under a ceiling far
// below what the records would take in memory, and hardly above the peak
// of an export of three records.
func TestExportsStayFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: exports hundreds of thousands of records (-short)")
	}
	check := exportcheckBinary(t)
	sqliteRows, postgresRows := exportRows(t)
	for _, tc := range []struct {
		driver string
		rows   int
	}{{"sqlite", sqliteRows}, {"postgres", postgresRows}} {
		t.Run(tc.driver, func(t *testing.T) {
			e := newEnv(t, "")
			dsn := filepath.Join(e.dir, "vnum.db")
			if tc.driver == "postgres" {
				dsn = pgtest.Start(t).NewDatabase(t)
				e.setYAML(fmt.Sprintf("  driver: sqlite\n  dsn: %s\n", filepath.Join(e.dir, "vnum.db")),
					fmt.Sprintf("  driver: postgres\n  dsn: %q\n", dsn))
			}
			e.setYAML("calls:\n", "billing:\n  timezone: UTC\ncalls:\n")
			e.run("merchant", "add", "m1", "--name", "Shop One")
			e.run("merchant", "add", "m2", "--name", "Shop Two")
			began := time.Now()
			seedExport(t, tc.driver, dsn, tc.rows)
			t.Logf("%s: seeded %d call records in %s", tc.driver, tc.rows, time.Since(began).Round(time.Millisecond))

			// A few records: m1's calls of the first second.
			few, baseline := e.export(check, "json", "cdr", "list", "--format", "json", "--merchant", "m1",
				"--to", exportStart.Add(time.Second).Format(time.RFC3339))
			require.Equal(t, 2, few.Rows)
			t.Logf("%s: cdr list of %d records: peak %d KiB", tc.driver, few.Rows, baseline)
			for _, format := range []string{"json", "csv"} {
				began := time.Now()
				sum, peak := e.export(check, format, "cdr", "list", "--format", format)
				t.Logf("%s: cdr list --format %s of %d records in %s: peak %d KiB", tc.driver, format, sum.Rows,
					time.Since(began).Round(time.Millisecond), peak)
				requireWhole(t, sum, tc.rows)
				requireFlat(t, peak, baseline)
			}

			e.startServe()
			pid := e.serve.cmd.Process.Pid
			e.waitAdmin("/readyz", 10*time.Second, func(status int, _ string) bool { return status == 200 }, "ready")
			url := fmt.Sprintf("http://127.0.0.1:%d/v1/cdrs", e.adminPort)
			few, _ = e.checkURL(check, "json", url+"?merchant=m1&to="+exportStart.Add(time.Second).Format(time.RFC3339))
			require.Equal(t, 2, few.Rows)
			baseline = vmHWM(t, pid)
			t.Logf("%s: vnum serve after an export of a few records: peak %d KiB", tc.driver, baseline)
			for _, format := range []string{"json", "csv"} {
				began := time.Now()
				sum, _ := e.checkURL(check, format, url)
				peak := vmHWM(t, pid)
				t.Logf("%s: GET /v1/cdrs (%s) of %d records in %s: serve's peak %d KiB", tc.driver, format, sum.Rows,
					time.Since(began).Round(time.Millisecond), peak)
				requireWhole(t, sum, tc.rows)
				requireFlat(t, peak, baseline)
			}
			logs, err := os.ReadFile(e.serve.logPath)
			require.NoError(t, err)
			require.Equal(t, 3, strings.Count(string(logs), `"path":"/v1/cdrs","route":"GET /v1/cdrs","status":200,`),
				"three whole exports logged: %s", logs)
			require.Equal(t, 2, strings.Count(string(logs), fmt.Sprintf(`"rows":%d}`, tc.rows)), "%s", logs)
			require.NotContains(t, string(logs), "admin request cut")
		})
	}
}

// seedExport writes rows call records straight into the store, in one
// statement and so one transaction: three calls a second from
// exportStart, for merchants m1 and m2 in turn, with the caller sorts an
// export meets (an account, a PSTN number, the consignee calling back, a
// name a spreadsheet would run as a formula, one with a comma and quotes).
// Record i has the ID c_ and i in 16 hex digits, so that the export's
// order (start, then ID) is the order of i.
func seedExport(t *testing.T, driver, dsn string, rows int) {
	t.Helper()
	sqlDriver, query := "sqlite3", `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
		INSERT INTO cdrs (id, call_id, node, merchant, binding_id, order_id, host, extension, direction, caller,
			caller_kind, started_at, ringing_at, answered_at, ended_at, talk_seconds, billed_minutes, fee,
			disposition, hangup_by, sip_status)
		SELECT printf('c_%016x', i), printf('%08x@192.0.2.10', i), 'vnum-1', CASE i % 2 WHEN 0 THEN 'm1' ELSE 'm2' END,
			printf('b_%016x', i / 4), printf('order-%07d', i / 4), printf('170%08d', i % 1000), printf('%04d', (i * 7919) % 10000),
			`+exportColumns+` FROM n`
	if driver == "postgres" {
		sqlDriver, query = "pgx", `INSERT INTO cdrs (id, call_id, node, merchant, binding_id, order_id, host, extension,
			direction, caller, caller_kind, started_at, ringing_at, answered_at, ended_at, talk_seconds, billed_minutes,
			fee, disposition, hangup_by, sip_status)
		SELECT 'c_' || lpad(to_hex(i), 16, '0'), lpad(to_hex(i), 8, '0') || '@192.0.2.10', 'vnum-1',
			CASE i % 2 WHEN 0 THEN 'm1' ELSE 'm2' END, 'b_' || lpad(to_hex(i / 4), 16, '0'), 'order-' || lpad((i / 4)::text, 7, '0'),
			'170' || lpad((i % 1000)::text, 8, '0'), lpad(((i * 7919) % 10000)::text, 4, '0'),
			`+exportColumns+` FROM generate_series(0, $1::bigint - 1) AS g(i)`
	}
	db, err := sql.Open(sqlDriver, dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	start := strconv.FormatInt(exportStart.UnixNano(), 10)
	_, err = db.Exec(strings.ReplaceAll(query, "$start", start), rows)
	require.NoError(t, err)
	if driver == "postgres" {
		// What autovacuum does soon after a bulk load.
		_, err = db.Exec(`ANALYZE cdrs`)
		require.NoError(t, err)
	}
}

// exportColumns are the seeded columns both databases compute alike, from
// direction on; $start is exportStart in Unix nanoseconds.
const exportColumns = `CASE i % 5 WHEN 0 THEN 'callback' ELSE 'to_consignee' END,
	CASE i % 5 WHEN 0 THEN 'consignee' WHEN 1 THEN '+8613700137000' WHEN 2 THEN '=1+2*3'
		WHEN 3 THEN 'O''Brien, "Jr"' ELSE 'alice' END,
	CASE i % 5 WHEN 0 THEN 'consignee' WHEN 1 THEN 'number' ELSE 'account' END,
	$start + (i / 3) * 1000000000, $start + (i / 3) * 1000000000 + 3000000000,
	CASE i % 4 WHEN 3 THEN NULL ELSE $start + (i / 3) * 1000000000 + 9000000000 END,
	$start + (i / 3) * 1000000000 + 70000000000,
	CASE i % 4 WHEN 3 THEN 0 ELSE 61 END, CASE i % 4 WHEN 3 THEN 0 ELSE 2 END, CASE i % 4 WHEN 3 THEN 0 ELSE 40000 END,
	CASE i % 4 WHEN 3 THEN 'no_answer' ELSE 'answered' END, 'caller', CASE i % 4 WHEN 3 THEN 480 ELSE 200 END`

// exportSummary is what exportcheck prints.
type exportSummary struct {
	Rows  int    `json:"rows"`
	First string `json:"first"`
	Last  string `json:"last"`
}

// requireWhole checks that an export held rows records, first to last.
func requireWhole(t *testing.T, sum exportSummary, rows int) {
	t.Helper()
	require.Equal(t, rows, sum.Rows)
	require.Equal(t, "c_0000000000000000", sum.First)
	require.Equal(t, fmt.Sprintf("c_%016x", rows-1), sum.Last)
}

// requireFlat checks an export's peak memory against the ceiling and
// against the peak of an export of a few records.
func requireFlat(t *testing.T, peak, baseline int64) {
	t.Helper()
	require.Less(t, peak, int64(exportCeilingKiB), "peak memory of the export, KiB")
	require.Less(t, peak-baseline, int64(exportGrowthKiB),
		"peak memory of the export (%d KiB) over one of a few records (%d KiB)", peak, baseline)
}

// export runs `vnum args...` with its output piped into exportcheck and
// returns what exportcheck found and vnum's peak memory in KiB: the last
// VmHWM read from /proc while it ran, every 10 ms. (The child's ru_maxrss
// would not do: Linux counts in it the memory of the test binary that
// forked it, which under the race detector is larger than vnum's own.)
func (e *env) export(check, format string, args ...string) (exportSummary, int64) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vnum := exec.CommandContext(ctx, e.bin, append([]string{"--config", e.config}, args...)...)
	vnum.Env, vnum.Dir = cleanEnviron(), e.dir
	checker := exec.CommandContext(ctx, check, "-format", format)
	r, w, err := os.Pipe()
	require.NoError(e.t, err)
	var out, vnumErr, checkErr bytes.Buffer
	vnum.Stdout, vnum.Stderr = w, &vnumErr
	checker.Stdin, checker.Stdout, checker.Stderr = r, &out, &checkErr
	require.NoError(e.t, vnum.Start())
	require.NoError(e.t, checker.Start())
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() { peak <- watchHWM(vnum.Process.Pid, done) }()
	stopWatch := sync.OnceFunc(func() { close(done) })
	defer stopWatch()
	// The children hold the pipe's ends now; the checker sees its end of
	// input when vnum exits.
	require.NoError(e.t, r.Close())
	require.NoError(e.t, w.Close())
	vnumRun := vnum.Wait()
	stopWatch()
	checkRun := checker.Wait()
	require.NoError(e.t, vnumRun, "vnum %s: %s", strings.Join(args, " "), vnumErr.String())
	require.NoError(e.t, checkRun, "exportcheck: %s", checkErr.String())
	var sum exportSummary
	require.NoError(e.t, json.Unmarshal(out.Bytes(), &sum), "exportcheck: %s", out.String())
	return sum, <-peak
}

// checkURL runs exportcheck on the export at url and returns what it
// found and how long it took.
func (e *env) checkURL(check, format, url string) (exportSummary, time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	out, err := exec.CommandContext(ctx, check, "-format", format, "-url", url).Output()
	var stderr []byte
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		stderr = ee.Stderr
	}
	require.NoError(e.t, err, "exportcheck %s: %s\n%s", url, stderr, e.serve.logTail(20))
	var sum exportSummary
	require.NoError(e.t, json.Unmarshal(out, &sum), "exportcheck: %s", out)
	return sum, time.Since(began)
}

// vmHWM returns the peak resident memory of process pid so far, in KiB.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	kib, err := readHWM(pid)
	require.NoError(t, err)
	return kib
}

// watchHWM reads the peak resident memory of process pid every 10 ms
// until done is closed, and returns the last it read (the peak only
// grows), or 0 when the process was gone before the first read.
func watchHWM(pid int, done <-chan struct{}) int64 {
	var peak int64
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// A process that has exited has no memory left to show.
		if kib, err := readHWM(pid); err == nil {
			peak = max(peak, kib)
		}
		select {
		case <-done:
			return peak
		case <-tick.C:
		}
	}
}

// readHWM reads VmHWM, the peak resident memory of process pid, in KiB,
// from /proc/PID/status.
func readHWM(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

var (
	exportcheckOnce sync.Once
	exportcheckBin  string
	exportcheckErr  error
)

// exportcheckBinary builds ./integration/exportcheck once per test run,
// without the race detector whatever the tests run under: it parses
// exports of a million records.
func exportcheckBinary(t *testing.T) string {
	t.Helper()
	root := moduleRoot(t)
	exportcheckOnce.Do(func() {
		exportcheckBin = filepath.Join(buildDir, "exportcheck")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(), "build", "-o", exportcheckBin, "./integration/exportcheck")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			exportcheckErr = fmt.Errorf("go build ./integration/exportcheck: %w\n%s", err, out)
		}
	})
	if exportcheckErr != nil {
		t.Fatal(exportcheckErr)
	}
	return exportcheckBin
}
