package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// logSink is serve's stderr: it keeps what is written and closes seen once
// a line holding want has been written.
type logSink struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	if bytes.Contains(s.buf.Bytes(), []byte(s.want)) {
		s.once.Do(func() { close(s.seen) })
	}
	return len(p), nil
}

// records returns the JSON log records written so far.
func (s *logSink) records(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.buf.String()), "\n") {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &r), "not a JSON log line: %q", line)
		out = append(out, r)
	}
	return out
}

// keepLogging restores the process's logger and level when t ends: serve
// sets both for the whole process.
func keepLogging(t *testing.T) {
	t.Helper()
	prev := slog.Default()
	t.Cleanup(func() {
		slog.SetDefault(prev)
		logLevel.Set(slog.LevelInfo)
	})
}

// serveLogs runs `vnum serve` in process at log.level level on a new
// store, stops it once a line holding until is written, and returns what
// it logged.
func serveLogs(t *testing.T, level, until string) []map[string]any {
	t.Helper()
	keepLogging(t)
	useTempStore(t)
	t.Setenv("VNUM_SIP_LISTEN", "udp://127.0.0.1:0")
	t.Setenv("VNUM_ADMIN_LISTEN", "127.0.0.1:0")
	t.Setenv("VNUM_LOG_LEVEL", level)
	// A trunk nobody answers, and no keepalives to notice: no call is placed.
	t.Setenv("VNUM_TRUNK_OUTBOUND", "sip:127.0.0.1:9;transport=udp")
	t.Setenv("VNUM_TRUNK_KEEPALIVE", "0s")
	sink := &logSink{want: until, seen: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var out bytes.Buffer
		cfg = nil
		done <- execute(ctx, newRootCmd(), []string{"serve"}, &out, sink)
	}()
	select {
	case <-sink.seen:
		cancel()
	case err := <-done:
		t.Fatalf("serve ended before logging %q: %v\n%s", until, err, sink.buf.String())
	}
	require.NoError(t, <-done, "serve")
	return sink.records(t)
}

// levels counts the records of each level.
func levels(recs []map[string]any) map[string]int {
	n := map[string]int{}
	for _, r := range recs {
		n[r["level"].(string)]++
	}
	return n
}

// TestServeLogLevel: log.level sets what serve writes, its own lines and
// sipgo's alike. At warn a whole run (start, serving, drain, stop) writes
// no info line, only the warning about the new store; at debug, debug
// lines appear, sipgo's among them.
func TestServeLogLevel(t *testing.T) {
	t.Run("warn", func(t *testing.T) {
		// The new store's warning comes before serve starts listening, and
		// serve's info lines (serving, draining, stopped) all follow it.
		recs := serveLogs(t, "warn", "created a new, empty store")
		require.Equal(t, map[string]int{"WARN": 1}, levels(recs), "%v", recs)
	})
	t.Run("info", func(t *testing.T) {
		recs := serveLogs(t, "info", "vnum serving")
		n := levels(recs)
		require.Zero(t, n["DEBUG"], "%v", recs)
		require.GreaterOrEqual(t, n["INFO"], 3, "serving, draining, stopped: %v", recs)
	})
	t.Run("debug", func(t *testing.T) {
		recs := serveLogs(t, "debug", "vnum serving")
		require.NotZero(t, levels(recs)["DEBUG"], "%v", recs)
		fromSIP := false
		for _, r := range recs {
			fromSIP = fromSIP || (r["level"] == "DEBUG" && r["component"] == "sip")
		}
		require.True(t, fromSIP, "no debug line of sipgo's: %v", recs)
	})
}

// TestSetLogLevel: the level changes while the handler runs, as a reload
// will change it; a bad level is refused naming the key and leaves the
// level as it was.
func TestSetLogLevel(t *testing.T) {
	keepLogging(t)
	var buf bytes.Buffer
	setupLogging(&buf)
	require.NoError(t, setLogLevel("warn"))
	slog.Info("hidden")
	slog.Warn("shown at warn")
	require.NoError(t, setLogLevel("debug"))
	slog.Debug("shown at debug")
	require.EqualError(t, setLogLevel("loud"), `log.level: want debug, info, warn or error, got "loud"`)
	slog.Debug("still debug")
	require.NoError(t, setLogLevel("error"))
	slog.Warn("hidden at error")

	out := buf.String()
	require.NotContains(t, out, "hidden")
	for _, msg := range []string{"shown at warn", "shown at debug", "still debug"} {
		require.Contains(t, out, msg)
	}
}
