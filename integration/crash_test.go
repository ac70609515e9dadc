package integration

import (
	"encoding/json"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCrashKeepsTalkTime kills `vnum serve` (SIGKILL, by its PID) during
// an answered call and starts it again: the call's row is closed as
// interrupted at the last time it was known to be up, and keeps, and is
// billed for, the talk time known before the crash (README "CDRs and billing": the row of an
// answered call is kept current at least every 10 s). The peers are sipgo
// user agents on loopback; vnum is the built binary with its defaults.
func TestCrashKeepsTalkTime(t *testing.T) {
	t.Parallel()
	// No RTP flows in this test; the media timeout must not end the call.
	e, _, _ := answeredCall(t, "")

	// Wait for the call's row to carry at least 10 s of talk while it is
	// still open, and for the call to have been answered 11 s or more, so
	// that the crash comes after a refresh and loses the time since.
	var open cdr
	var answered time.Time
	deadline := time.Now().Add(40 * time.Second)
	for {
		rows, raw := e.cdrs()
		require.Len(t, rows, 1, "cdr list: %s", raw)
		open = rows[0]
		require.False(t, open.ended(), "the call ended before the crash: %s", raw)
		if open.AnsweredAt != nil {
			answered = parseTime(t, *open.AnsweredAt)
			if talk := number(t, open.TalkSeconds); talk >= 10 && time.Since(answered) >= 11*time.Second {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the open row was not refreshed with 10 s of talk within 40 s: %s", raw)
		}
		time.Sleep(250 * time.Millisecond)
	}
	seenTalk := number(t, open.TalkSeconds)

	pid := e.serve.cmd.Process.Pid
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	_, err := e.serve.wait(10 * time.Second)
	require.NoError(t, err)
	killed := time.Now()
	t.Logf("killed vnum serve (pid %d) %.1f s after the answer, the row showing %d s of talk",
		pid, killed.Sub(answered).Seconds(), seenTalk)

	restart := time.Now()
	e.serve = startProc(t, "vnum serve (restarted)", e.dir, filepath.Join(e.dir, "vnum-serve-restarted.log"),
		cleanEnviron(), e.bin, "--config", e.config, "serve")
	e.waitSIP(20 * time.Second)

	rows, raw := e.cdrs()
	require.Len(t, rows, 1, "cdr list: %s", raw)
	c := rows[0]
	dump, _ := json.MarshalIndent(c, "", "  ")
	t.Logf("CDR after the restart: %s", dump)
	require.Equal(t, "interrupted", c.Disposition, "CDR: %s", dump)
	require.Equal(t, "system", c.HangupBy, "CDR: %s", dump)
	require.True(t, c.ended(), "CDR: %s", dump)
	talk := number(t, c.TalkSeconds)
	require.GreaterOrEqual(t, talk, 10, "the talk time known before the crash is kept: %s", dump)
	require.GreaterOrEqual(t, talk, seenTalk, "CDR: %s", dump)
	ended := parseTime(t, *c.EndedAt)
	// Times are printed in whole seconds.
	require.True(t, ended.Before(restart), "ended_at %s is the last time known alive, not the restart %s", ended, restart)
	require.False(t, ended.After(killed), "ended_at %s after the kill %s", ended, killed)
	require.False(t, ended.Before(answered.Add(time.Duration(seenTalk-1)*time.Second)),
		"ended_at %s is before the last refresh seen (%d s after the answer at %s)", ended, seenTalk, answered)
	require.Equal(t, "1", c.BilledMinutes.String(), "CDR: %s", dump)
	require.Equal(t, answeredFee, c.Fee, "an interrupted call is billed for its known talk: %s", dump)
	require.NotContains(t, string(dump), consignee)
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return v
}

func number(t *testing.T, n json.Number) int {
	t.Helper()
	v, err := n.Int64()
	require.NoError(t, err)
	return int(v)
}
