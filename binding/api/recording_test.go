package api_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding/api"
	"github.com/vnum/vnum/callrec"
)

// TestRecordingEndpoint: GET /v1/cdrs/{id}/recording needs the token;
// hands out the file of a recorded call byte for byte as audio/wav; and
// answers 404 with a JSON error naming the record for an unknown record,
// a call that was not recorded, a recording no longer kept and an id
// that would name another file.
func TestRecordingEndpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := newHarness(t, func(o *api.Options) { o.RecordingDir = dir })
	ctx := context.Background()
	start := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	rec := &callrec.Record{ID: "c_0123456789abcdef", Merchant: "m1", StartedAt: start,
		AnsweredAt: start.Add(time.Second), Recorded: true}
	require.NoError(t, h.store.StartCDR(ctx, rec))
	plain := &callrec.Record{ID: "c_fedcba9876543210", Merchant: "m1", StartedAt: start}
	require.NoError(t, h.store.StartCDR(ctx, plain))
	wav := append([]byte("RIFF\x24\x00\x00\x00WAVE"), make([]byte, 1000)...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, rec.ID+".wav"), wav, 0o640))
	// A file beside the folder that a crafted id might reach.
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(dir), "secret.wav"), []byte("no"), 0o640))

	path := "/v1/cdrs/" + rec.ID + "/recording"
	r := h.do(request{method: "GET", path: path, auth: str("")})
	require.Equal(t, 401, r.status)
	r = h.do(request{method: "GET", path: path, auth: str("Bearer wrong")})
	require.Equal(t, 401, r.status)

	r = h.do(request{method: "GET", path: path})
	require.Equal(t, 200, r.status)
	require.Equal(t, "audio/wav", r.header.Get("Content-Type"))
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	require.Equal(t, wav, r.body)
	r = h.do(request{method: "GET", path: path, rangeHdr: "bytes=0-11"})
	require.Equal(t, 206, r.status)
	require.Equal(t, wav[:12], r.body)
	// A range past the end is an error like any other: JSON (do checks).
	r = h.do(request{method: "GET", path: path, rangeHdr: "bytes=5000-6000"})
	require.Equal(t, 416, r.status)
	require.Equal(t, "range not satisfiable: the recording has 1012 bytes", r.object(t)["error"])
	require.Empty(t, r.header.Get("Content-Disposition"))

	for id, why := range map[string]string{
		"c_nope":          "not found",
		plain.ID:          "no recording: the call was not recorded",
		"..%2Fsecret":     "not found",
		"%2E%2E%2Fsecret": "not found",
	} {
		r := h.do(request{method: "GET", path: "/v1/cdrs/" + id + "/recording"})
		require.Equal(t, 404, r.status, id)
		require.Contains(t, r.object(t)["error"], why, id)
	}

	require.NoError(t, os.Remove(filepath.Join(dir, rec.ID+".wav")))
	r = h.do(request{method: "GET", path: path})
	require.Equal(t, 404, r.status)
	require.Contains(t, r.object(t)["error"], "cdr "+rec.ID+": no recording: its file is no longer kept")
	r = h.do(request{method: "GET", path: path + "?format=mp3"})
	require.Equal(t, 400, r.status)
}
