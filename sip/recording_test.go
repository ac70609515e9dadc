package sip

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/protection"
	"github.com/vnum/vnum/sip/sipua"
)

// wavFile is a recording as read back: its format and its samples, one
// slice per channel.
type wavFile struct {
	channels, rate, bits int
	left, right          []int16
}

// readWAV reads a canonical 44-byte-header PCM WAV file.
func readWAV(t *testing.T, path string) wavFile {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(b), 44)
	require.Equal(t, "RIFF", string(b[0:4]))
	require.Equal(t, "WAVE", string(b[8:12]))
	require.Equal(t, "data", string(b[36:40]))
	w := wavFile{channels: int(binary.LittleEndian.Uint16(b[22:])), rate: int(binary.LittleEndian.Uint32(b[24:])),
		bits: int(binary.LittleEndian.Uint16(b[34:]))}
	data := b[44:]
	require.EqualValues(t, len(data), binary.LittleEndian.Uint32(b[40:]), "the header counts the data written")
	for i := 0; i+4 <= len(data); i += 4 {
		w.left = append(w.left, int16(binary.LittleEndian.Uint16(data[i:])))
		w.right = append(w.right, int16(binary.LittleEndian.Uint16(data[i+2:])))
	}
	return w
}

// loud counts the samples of pcm louder than a whisper.
func loud(pcm []int16) int {
	n := 0
	for _, s := range pcm {
		if s > 1000 || s < -1000 {
			n++
		}
	}
	return n
}

// heardPrompt reads RTP on conn until the prompt name (in English, as the
// test server speaks) has arrived from one source, and requires that what
// arrived first is that prompt; seen is called at the first packet.
func heardPrompt(t *testing.T, conn *net.UDPConn, name string, seen func()) {
	t.Helper()
	want, err := media.Prompt("en", name)
	require.NoError(t, err)
	// The first second is enough to know the prompt.
	want = want[:min(len(want), 8000)]
	var got []int16
	buf := make([]byte, 1500)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(15*time.Second)))
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	for len(got) < len(want) {
		n, _, err := conn.ReadFromUDP(buf)
		require.NoError(t, err, "no prompt %q", name)
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil || p.PayloadType > 8 {
			continue
		}
		if len(got) == 0 {
			seen()
		}
		if p.PayloadType == 0 {
			got = append(got, media.DecodeULaw(p.Payload)...)
		} else {
			got = append(got, media.DecodeALaw(p.Payload)...)
		}
	}
	// G.711 keeps each sample within its quantisation step.
	for i, s := range want {
		require.InDelta(t, s, got[i], float64(abs(s))/8+16, "sample %d of the prompt %q", i, name)
	}
}

// placed is a call a phone placed: its dialog once answered, or why not.
type placed struct {
	d   *sipgo.DialogClientSession
	err error
}

// callAsync has phone dial vnum in the background; the call's outcome
// comes on the channel once it is answered or refused (a recorded call
// is answered only after its notice).
func callAsync(ctx context.Context, phone *sipua.Softphone, vnum netip.AddrPort, dialled string) <-chan placed {
	out := make(chan placed, 1)
	go func() {
		d, err := phone.Call(ctx, vnum, dialled)
		out <- placed{d, err}
	}()
	return out
}

// recordedCall is one call through a recording server: the caller dials
// X-E, the carrier answers, and each side's notice is checked as it
// arrives (notice: that the call is recorded); then the side speaking
// sends a tone for two seconds, the caller hangs up, and the CDR is
// returned.
func recordedCall(t *testing.T, e *testEnv, notice bool, callerSpeaks bool) CDR {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	answered := callAsync(ctx, e.phone, e.vnum, testHost+"-"+testExt)
	inv := nextInvite(t, e.carrier)
	offer, err := media.ParseSDP(inv.Body())
	require.NoError(t, err)
	vnumB := offer.RemoteAddr()
	if notice {
		// Both sides hear it before the bridge: the call is in its notice
		// when the first packet of each arrives.
		// (Checked at the first: the second's first packet may have
		// waited in its socket until the bridge.)
		heardPrompt(t, e.carrier.RTP, media.PromptRecorded, func() { e.waitState(StateNotice) })
		heardPrompt(t, e.phone.RTP, media.PromptRecorded, func() {})
	}
	r := <-answered
	require.NoError(t, r.err)
	e.waitState(StateBridged)
	vnumA, err := sipua.MediaAddr(r.d.InviteResponse.Body())
	require.NoError(t, err)
	from, to := e.phone.RTP, vnumA
	if !callerSpeaks {
		from, to = e.carrier.RTP, vnumB
	}
	require.NoError(t, sipua.SendAudio(ctx, from, to, 0x5EED, 100))
	require.NoError(t, r.d.Bye(ctx))
	cdr := e.router.waitEnded(t)
	e.waitNoCalls()
	return cdr
}

// TestRecordingOn: with recording.mode on, both parties hear that the
// call is recorded before the bridge, and the call leaves one WAV file
// named after its record: two channels of 8 kHz 16-bit PCM as long as the
// bridged call, the tone on the channel of the side that sent it and
// silence on the other. The CDR says recorded; the metrics count the file
// and its bytes; the info log holds no B.
func TestRecordingOn(t *testing.T) {
	t.Parallel()
	for name, callerSpeaks := range map[string]bool{"caller speaks": true, "callee speaks": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			e := newTestEnv(t, "answer", func(o *Options) {
				o.RecordingMode, o.RecordingDir = config.RecordOn, dir
			})
			cdr := recordedCall(t, e, true, callerSpeaks)
			require.True(t, cdr.Recorded)
			require.Equal(t, "answered", string(cdr.Disposition))
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1)
			path := filepath.Join(dir, cdr.ID+".wav")
			w := readWAV(t, path)
			require.Equal(t, 2, w.channels)
			require.Equal(t, 8000, w.rate)
			require.Equal(t, 16, w.bits)
			// Two seconds of tone were sent; the file runs from the
			// bridge to the last packet, within the bridged time.
			frames := len(w.left)
			require.GreaterOrEqual(t, frames, 100*160, "the tone's samples")
			bridged := cdr.EndedAt.Sub(cdr.AnsweredAt)
			require.LessOrEqual(t, frames, int(bridged.Seconds()*8000)+8000, "no longer than the bridged call")
			speaking, silent := w.left, w.right
			if !callerSpeaks {
				speaking, silent = w.right, w.left
			}
			require.Greater(t, loud(speaking), 80*160, "the tone on the speaker's channel")
			require.Zero(t, loud(silent), "silence on the other channel")

			info, err := os.Stat(path)
			require.NoError(t, err)
			written, bytes := e.srv.Recordings()
			require.EqualValues(t, 1, written)
			require.Equal(t, info.Size(), bytes)
			e.assertLogsPrivate()
		})
	}
}

// TestRecordingOff: with recording.mode off (the default) no notice is
// played, no file is written, and the CDR says not recorded.
func TestRecordingOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := newTestEnv(t, "answer", func(o *Options) { o.RecordingDir = dir })
	cdr := recordedCall(t, e, false, true)
	require.False(t, cdr.Recorded)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
	written, _ := e.srv.Recordings()
	require.Zero(t, written)
}

// TestRecordingMerchant: with recording.mode merchant only the calls of
// a merchant whose protection asks for it (record) are recorded.
func TestRecordingMerchant(t *testing.T) {
	t.Parallel()
	for name, record := range map[string]bool{"record": true, "no record": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			d := protection.Decision{Verdict: protection.Allow, Policy: protection.Policy{Record: record}}
			e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"}, func(o *Options) {
				o.RecordingMode, o.RecordingDir = config.RecordMerchant, dir
			}, func(r *fakeRouter) Router {
				return &protectingStore{fakeRouter: r, decision: d, rings: make(chan callrec.Ring, 4), blocks: make(chan string, 4)}
			})
			cdr := recordedCall(t, e, record, true)
			require.Equal(t, record, cdr.Recorded)
			_, err := os.Stat(filepath.Join(dir, cdr.ID+".wav"))
			if record {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, os.ErrNotExist)
			}
		})
	}
}

// choosingStore is the fake store whose merchants' choice to record is
// records.
type choosingStore struct {
	*fakeRouter
	records bool
}

func (s *choosingStore) RecordsCalls(context.Context, string) (bool, error) { return s.records, nil }

// TestRecordingMerchantCallback: in recording.mode merchant a
// consignee's call back is recorded when its binding's merchant asked for
// its calls to be recorded, and only then; both sides hear so first.
func TestRecordingMerchantCallback(t *testing.T) {
	t.Parallel()
	for name, records := range map[string]bool{"record": true, "no record": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var store *choosingStore
			e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"}, func(o *Options) {
				trunkFromLoopback(o)
				o.RecordingMode, o.RecordingDir = config.RecordMerchant, dir
			}, func(r *fakeRouter) Router {
				store = &choosingStore{fakeRouter: r, records: records}
				return store
			})
			const courier = "13700137000"
			e.router.addCallback(testHost, testNational, Callback{
				Target: Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee},
				Number: courier,
			})
			b := newConsigneePhone(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			answered := callAsync(ctx, b, e.vnum, testHost)
			nextInvite(t, e.carrier)
			if records {
				heardPrompt(t, e.carrier.RTP, media.PromptRecorded, func() { e.waitState(StateNotice) })
				heardPrompt(t, b.RTP, media.PromptRecorded, func() {})
			}
			r := <-answered
			require.NoError(t, r.err)
			require.NoError(t, r.d.Bye(ctx))
			cdr := e.router.waitEnded(t)
			require.Equal(t, "callback", string(cdr.Direction))
			require.Equal(t, records, cdr.Recorded)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, map[bool]int{true: 1, false: 0}[records])
		})
	}
}
