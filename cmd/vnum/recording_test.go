package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/sip/sipua"
)

// TestRecordingGet: `vnum recording get CDR_ID -o FILE.wav` writes the
// call's recording byte for byte, refuses to overwrite a file that
// exists (leaving it as it was), writes to standard output with -o -,
// and refuses an unknown record, a call that was not recorded and a
// recording no longer kept in one line naming the record; none of its
// output holds B.
func TestRecordingGet(t *testing.T) {
	dsn := useTempStore(t)
	dir := t.TempDir()
	t.Setenv("VNUM_RECORDING_DIR", dir)
	shippedBinding(t)
	ctx := context.Background()
	s, err := binding.Open(ctx, binding.DriverSQLite, dsn)
	require.NoError(t, err)
	start := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	rec := &callrec.Record{Merchant: "m1", StartedAt: start, AnsweredAt: start.Add(time.Second), Recorded: true}
	require.NoError(t, s.StartCDR(ctx, rec))
	plain := &callrec.Record{Merchant: "m1", StartedAt: start}
	require.NoError(t, s.StartCDR(ctx, plain))
	require.NoError(t, s.Close())
	wav := append([]byte("RIFF\x24\x10\x00\x00WAVE"), bytes.Repeat([]byte{1, 2, 3, 4}, 1024)...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, rec.ID+".wav"), wav, 0o640))

	out := filepath.Join(t.TempDir(), "call.wav")
	stdout, stderr, err := runCLI(t, "recording", "get", rec.ID, "-o", out)
	require.NoError(t, err, stderr)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "recording of cdr "+rec.ID+" written to "+out)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, wav, got)

	require.NoError(t, os.WriteFile(out, []byte("mine"), 0o600))
	requireOneLineError(t, []string{"recording", "get", rec.ID, "-o", out}, out+" exists; not overwritten")
	got, err = os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "mine", string(got), "the operator's file is left alone")
	entries, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left behind")

	require.Equal(t, string(wav), mustRun(t, "recording", "get", rec.ID, "-o", "-"))

	requireOneLineError(t, []string{"recording", "get", "c_nope", "-o", out + "2"}, "cdr c_nope: not found")
	requireOneLineError(t, []string{"recording", "get", plain.ID, "-o", out + "2"},
		"cdr "+plain.ID+": no recording: the call was not recorded")
	requireOneLineError(t, []string{"recording", "get", rec.ID}, `required flag(s) "output" not set`)
	require.NoError(t, os.Remove(filepath.Join(dir, rec.ID+".wav")))
	requireOneLineError(t, []string{"recording", "get", rec.ID, "-o", out + "2"},
		"cdr "+rec.ID+": no recording: its file is no longer kept (recording.keep)")
	_, err = os.Stat(out + "2")
	require.ErrorIs(t, err, os.ErrNotExist, "a refused get writes nothing")
}

// TestRecordingSweep: a serving node's sweep deletes the recordings
// older than recording.keep by the clock it is given, at once and then
// at each interval, and leaves the younger ones and other files alone.
func TestRecordingSweep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	for name, age := range map[string]time.Duration{"old.wav": 800 * time.Hour, "young.wav": 10 * time.Hour,
		"later.wav": 700 * time.Hour, "notes.txt": 900 * time.Hour} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o640))
		require.NoError(t, os.Chtimes(p, t0.Add(-age), t0.Add(-age)))
	}
	var now atomic.Int64
	now.Store(t0.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	r := config.Recording{Mode: config.RecordOn, Dir: dir, Keep: 720 * time.Hour}
	stop := startSweep(r, 5*time.Millisecond, clock, slog.New(slog.DiscardHandler))
	t.Cleanup(stop)
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	require.Eventually(t, func() bool { return !exists("old.wav") }, 10*time.Second, 5*time.Millisecond)
	require.True(t, exists("later.wav"))
	require.True(t, exists("young.wav"))
	now.Store(t0.Add(48 * time.Hour).UnixNano()) // later.wav is now 748 h old
	require.Eventually(t, func() bool { return !exists("later.wav") }, 10*time.Second, 5*time.Millisecond)
	stop()
	require.True(t, exists("young.wav"))
	require.True(t, exists("notes.txt"), "only recordings are swept")
}

// TestRecordingDirPrepared: a node that records makes recording.dir,
// and refuses to start, in one line naming the key and before the store
// is touched, when it cannot write there.
func TestRecordingDirPrepared(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "b")
	require.NoError(t, prepareRecordings(config.Recording{Mode: config.RecordOn, Dir: dir, Keep: time.Hour}))
	info, err := os.Stat(dir)
	require.NoError(t, err)
	require.True(t, info.IsDir())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "the check leaves nothing behind")

	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	require.NoError(t, os.WriteFile(blocker, nil, 0o600))
	c := config.Default()
	c.SIP.Listen = []string{"udp://127.0.0.1:0"}
	c.Store.DSN = filepath.Join(t.TempDir(), "vnum.db")
	c.Trunk.Outbound = "sip:127.0.0.1:9;transport=udp"
	c.Recording = config.Recording{Mode: config.RecordMerchant, Dir: filepath.Join(blocker, "rec"), Keep: time.Hour}
	_, err = startNodeWith(context.Background(), c, slog.New(slog.DiscardHandler), true, nil)
	require.ErrorContains(t, err, "recording.dir: ")
	_, err = os.Stat(c.Store.DSN)
	require.ErrorIs(t, err, os.ErrNotExist, "the store is not even created")
	// Off: nothing is made or checked.
	require.NoError(t, prepareRecordings(config.Recording{Mode: config.RecordOff, Dir: filepath.Join(blocker, "rec")}))
}

// TestRecordedCallThroughServe: a node with recording.mode on records a
// call placed through it; the CDR says recorded; /metrics counts the
// recording and its bytes; the admin API hands out its file (audio/wav,
// the token required, 404 in JSON for an unknown record) and so does the
// CLI, byte for byte; no output and no info log line holds B.
func TestRecordedCallThroughServe(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	useTempStore(t)
	t.Setenv("VNUM_RECORDING_DIR", dir)
	n, carrier, vnum := startTestNodeAt(t, func(c *config.Config) {
		c.Recording.Mode, c.Recording.Dir = config.RecordOn, dir
	}, time.Now, log)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := shippedBinding(t)
	mustRun(t, "account", "add", "m1", "alice", "--password", "alice-secret")
	c := config.Default()
	c.Admin.Listen, c.Admin.Token, c.Recording.Dir = "127.0.0.1:0", adminToken, dir
	url := startTestAdmin(t, c, n.store, n.stats())

	phone, err := sipua.NewSoftphone("alice", "alice-secret", nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	d, err := phone.Call(ctx, vnum, b.Host+"-"+b.Extension)
	require.NoError(t, err)
	_, err = carrier.NextSession(15 * time.Second)
	require.NoError(t, err)
	to, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	require.NoError(t, sipua.SendAudio(ctx, phone.RTP, to, 0x5EED, 50))
	require.NoError(t, d.Bye(ctx))
	require.Eventually(t, func() bool { return n.sip.ActiveCalls() == 0 }, 10*time.Second, 20*time.Millisecond)

	var cdrs []map[string]any
	out := mustRun(t, "cdr", "list", "--format", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &cdrs))
	require.Len(t, cdrs, 1)
	require.Equal(t, true, cdrs[0]["recorded"])
	id := cdrs[0]["id"].(string)
	file, err := os.ReadFile(filepath.Join(dir, id+".wav"))
	require.NoError(t, err)
	require.Greater(t, len(file), 44+50*160*4/2, "a second of the caller's audio, at least half of it")

	_, metrics := get(t, url+"/metrics", "")
	require.Contains(t, metrics, "vnum_recordings_total 1\n")
	require.Contains(t, metrics, "vnum_recording_bytes_total "+strconv.Itoa(len(file))+"\n")

	status, _ := get(t, url+"/v1/cdrs/"+id+"/recording", "")
	require.Equal(t, 401, status)
	req, err := http.NewRequest(http.MethodGet, url+"/v1/cdrs/"+id+"/recording", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, "audio/wav", res.Header.Get("Content-Type"))
	require.Equal(t, file, body)
	status, msg := get(t, url+"/v1/cdrs/c_nope/recording", adminToken)
	require.Equal(t, 404, status)
	require.JSONEq(t, `{"error":"cdr c_nope: not found"}`, msg)

	saved := filepath.Join(t.TempDir(), "call.wav")
	mustRun(t, "recording", "get", id, "-o", saved)
	got, err := os.ReadFile(saved)
	require.NoError(t, err)
	require.Equal(t, file, got)

	mu.Lock()
	defer mu.Unlock()
	require.Contains(t, logs.String(), "recording written")
	for _, s := range []string{out, msg, logs.String()} {
		require.NotContains(t, s, consignee)
	}
}

// lockedWriter is a writer safe for the node's goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
