package record

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
)

// wav is a parsed recording.
type wav struct {
	channels, rate, bits int
	// declared is the data size the header gives; left and right the
	// samples of its frames.
	declared    int
	left, right []int16
}

// readWAV parses a recording as a player would: the header, then as many
// frames as the header declares.
func readWAV(t *testing.T, path string) wav {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(b), headerSize)
	require.Equal(t, "RIFF", string(b[0:4]))
	require.Equal(t, "WAVEfmt ", string(b[8:16]))
	require.Equal(t, "data", string(b[36:40]))
	w := wav{channels: int(binary.LittleEndian.Uint16(b[22:])), rate: int(binary.LittleEndian.Uint32(b[24:])),
		bits: int(binary.LittleEndian.Uint16(b[34:])), declared: int(binary.LittleEndian.Uint32(b[40:]))}
	require.Equal(t, uint32(36+w.declared), binary.LittleEndian.Uint32(b[4:]), "RIFF size")
	require.LessOrEqual(t, headerSize+w.declared, len(b), "the header declares no more than the file holds")
	data := b[headerSize : headerSize+w.declared]
	for i := 0; i+frameBytes <= len(data); i += frameBytes {
		w.left = append(w.left, int16(binary.LittleEndian.Uint16(data[i:])))
		w.right = append(w.right, int16(binary.LittleEndian.Uint16(data[i+2:])))
	}
	return w
}

// rms is the loudness of s[from:to] (frames).
func rms(s []int16, from, to int) float64 {
	var sum float64
	for _, v := range s[from:to] {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(to-from))
}

// tone is 20 ms of a sine of hz at frame n, A-law encoded.
func tone(hz float64, n int) []byte {
	pcm := make([]int16, 160)
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*hz*float64(n+i)/rate))
	}
	return media.EncodeALaw(pcm)
}

// talk feeds side's 20 ms packets from frame from to frame to (a tone
// of hz), timestamps from base, as if each arrived on time, through the
// side's tap as the relay would.
func talk(w *Writer, start time.Time, side Side, ssrc, base uint32, hz float64, from, to int) {
	for n := from; n < to; n += 160 {
		at := start.Add(time.Duration(n) * time.Second / rate)
		for !w.Tap(side).Packet(8, ssrc, base+uint32(n), at, tone(hz, n)) {
			time.Sleep(time.Millisecond) // a test may wait; the relay never does
		}
	}
}

// newWriter creates a recording in a temporary folder, started at a fixed
// time, and returns it with its path and start.
func newWriter(t *testing.T) (*Writer, string, time.Time) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.wav")
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	w, err := Create(path, start, Options{})
	require.NoError(t, err)
	return w, path, start
}

// TestTwoWayCall: each side speaks in turn (a tone on one side only at a
// time), with timestamps that start anywhere: the file has two channels
// at 8 kHz, the call's length, and audio on each channel exactly where
// that side spoke.
func TestTwoWayCall(t *testing.T) {
	t.Parallel()
	w, path, start := newWriter(t)
	talk(w, start, Caller, 0x1111, 4_294_963_000, 1000, 0, 8000) // the caller's first second; its timestamps wrap
	talk(w, start, Callee, 0x2222, 12345, 600, 8000, 16000)      // then the consignee's
	require.NoError(t, w.Close())
	require.Equal(t, 2*time.Second, w.Duration())
	require.Zero(t, w.Dropped())

	f := readWAV(t, path)
	require.Equal(t, []int{2, 8000, 16}, []int{f.channels, f.rate, f.bits})
	require.Len(t, f.left, 16000, "two seconds")
	require.Greater(t, rms(f.left, 0, 8000), 3000.0, "the caller spoke first")
	require.Zero(t, rms(f.right, 0, 8000), "the consignee was silent")
	require.Zero(t, rms(f.left, 8000, 16000))
	require.Greater(t, rms(f.right, 8000, 16000), 3000.0, "then the consignee spoke")
}

// TestLateSideMeetsTheOther: one side's three seconds come all before
// the other side's of the same moments (the writer's window has moved on
// past most of them): both channels hold their tone over the whole three
// seconds, neither erasing the other, the late part written to the file
// and the recent part met in memory.
func TestLateSideMeetsTheOther(t *testing.T) {
	t.Parallel()
	w, path, start := newWriter(t)
	talk(w, start, Caller, 1, 0, 1000, 0, 24000)
	talk(w, start, Callee, 2, 0, 600, 0, 24000)
	require.NoError(t, w.Close())

	f := readWAV(t, path)
	require.Len(t, f.left, 24000)
	for from := 0; from < 24000; from += 4000 {
		require.Greater(t, rms(f.left, from, from+4000), 3000.0, "the caller at frame %d", from)
		require.Greater(t, rms(f.right, from, from+4000), 3000.0, "the consignee at frame %d", from)
	}
}

// TestGapIsSilence: a side that stops sending for half a second (silence
// suppression, a mute) leaves half a second of silence where it stopped,
// and what it says next lands where its timestamps put it.
func TestGapIsSilence(t *testing.T) {
	t.Parallel()
	w, path, start := newWriter(t)
	talk(w, start, Caller, 7, 0, 1000, 0, 4000)
	talk(w, start, Caller, 7, 0, 1000, 8000, 12000)
	require.NoError(t, w.Close())

	f := readWAV(t, path)
	require.Len(t, f.left, 12000, "1.5 s: the gap is kept, not squeezed out")
	require.Greater(t, rms(f.left, 0, 4000), 3000.0)
	require.Zero(t, rms(f.left, 4000, 8000), "silence where nothing came")
	require.Greater(t, rms(f.left, 8000, 12000), 3000.0)
}

// TestLateStartAndNewStream: a side whose first packet comes a second
// after the bridge starts a second in; a new SSRC (a re-offer) with other
// timestamps goes by its arrival; a packet of another payload type is
// skipped.
func TestLateStartAndNewStream(t *testing.T) {
	t.Parallel()
	w, path, start := newWriter(t)
	talk(w, start, Callee, 1, 500, 600, 8000, 12000)
	talk(w, start, Callee, 2, 99_000_000, 600, 16000, 20000)
	require.True(t, w.Packet(Callee, 101, 2, 0, start, []byte{1, 2, 3, 4}))
	require.NoError(t, w.Close())

	f := readWAV(t, path)
	require.Len(t, f.right, 20000)
	require.Zero(t, rms(f.right, 0, 8000))
	require.Greater(t, rms(f.right, 8000, 12000), 3000.0)
	require.Zero(t, rms(f.right, 12000, 16000))
	require.Greater(t, rms(f.right, 16000, 20000), 3000.0)
	require.Zero(t, rms(f.left, 0, 20000))
}

// TestPacketNeverBlocks: with a queue of two, packets handed faster than
// any disk takes them are each either queued or dropped and counted; the
// call to Packet always returns.
func TestPacketNeverBlocks(t *testing.T) {
	t.Parallel()
	w, err := Create(filepath.Join(t.TempDir(), "c.wav"), time.Now(), Options{Queue: 2})
	require.NoError(t, err)
	queued := 0
	for i := range 10000 {
		if w.Packet(Caller, 8, 1, uint32(i*160), time.Now(), tone(1000, 0)) {
			queued++
		}
	}
	require.NoError(t, w.Close())
	require.EqualValues(t, 10000, uint64(queued)+w.Dropped())
}

// TestExistingFileRefused: a recording never overwrites a file.
func TestExistingFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.wav")
	require.NoError(t, os.WriteFile(path, []byte("keep"), 0o600))
	_, err := Create(path, time.Now(), Options{})
	require.ErrorIs(t, err, os.ErrExist)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "keep", string(b))
}

// TestKilledMidCall: a process recording a call is killed with SIGKILL
// mid-call: the file it leaves is a WAV file whose header declares audio
// that is there, the caller's tone on the left.
func TestKilledMidCall(t *testing.T) {
	if path := os.Getenv("VNUMTEST_RECORD_CHILD"); path != "" {
		recordForever(path)
		return
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.wav")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledMidCall$")
	cmd.Env = append(os.Environ(), "VNUMTEST_RECORD_CHILD="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Wait() })
	// The child says "fixed" once its header counts a second of audio.
	line := make([]byte, 6)
	_, err = out.Read(line)
	require.NoError(t, err)
	require.Equal(t, "fixed\n", string(line))
	require.NoError(t, cmd.Process.Kill())

	f := readWAV(t, path)
	require.Equal(t, 2, f.channels)
	require.GreaterOrEqual(t, len(f.left), 8000)
	require.Greater(t, rms(f.left, 0, 8000), 3000.0)
}

// recordForever is TestKilledMidCall's child: it records the caller's
// tone in real time until killed, and prints "fixed" once the header
// declares a second of it.
func recordForever(path string) {
	start := time.Now()
	w, err := Create(path, start, Options{FixEvery: 50 * time.Millisecond})
	if err != nil {
		os.Exit(2)
	}
	said := false
	for n := 0; ; n += 160 {
		at := start.Add(time.Duration(n) * time.Second / rate)
		time.Sleep(time.Until(at))
		w.Packet(Caller, 8, 9, uint32(n), at, tone(1000, n))
		if !said {
			if b, err := os.ReadFile(path); err == nil && len(b) >= headerSize &&
				binary.LittleEndian.Uint32(b[40:]) >= 8000*frameBytes {
				os.Stdout.WriteString("fixed\n")
				said = true
			}
		}
	}
}

// BenchmarkPacket is what recording costs the relay per packet: a copy
// into the writer's queue, under its lock. Packets are handed in bursts
// that the default queue holds, each taken by the writer before the
// next, as at a call's pace; only the handing is timed.
func BenchmarkPacket(b *testing.B) {
	w, err := Create(filepath.Join(b.TempDir(), "c.wav"), time.Now(), Options{})
	require.NoError(b, err)
	payload := tone(1000, 0)
	now := time.Now()
	const burst = DefaultQueue / 2
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += burst {
		for k := i; k < min(i+burst, b.N); k++ {
			w.Packet(Caller, 8, 1, uint32(k*160), now, payload)
		}
		b.StopTimer()
		for {
			w.mu.Lock()
			n := len(w.queued.pkts)
			w.mu.Unlock()
			if n == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
	}
	b.StopTimer()
	require.Zero(b, w.Dropped())
	require.NoError(b, w.Close())
}
