package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media/record"
)

// Recordings (README "Recordings"): the folder a recording node writes
// to, the sweep that deletes what is older than recording.keep, the
// metrics, and `vnum recording get`.

// recordingSweepEvery is how often a serving node sweeps recording.dir.
const recordingSweepEvery = 10 * time.Minute

// prepareRecordings makes recording.dir when calls are recorded, and
// checks that vnum can write there, before the store is touched: a node
// that cannot keep its recordings does not start.
func prepareRecordings(r config.Recording) error {
	if r.Mode == config.RecordOff {
		return nil
	}
	if err := os.MkdirAll(r.Dir, 0o750); err != nil {
		return fmt.Errorf("recording.dir: %w", err)
	}
	f, err := os.CreateTemp(r.Dir, ".vnum-write-check-*")
	if err != nil {
		return fmt.Errorf("recording.dir: cannot write in %s: %w", r.Dir, err)
	}
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// startSweep deletes the recordings of recording.dir older than
// recording.keep now and every every, by the clock now, until stop is
// called. It runs whatever recording.mode is: files recorded before the
// mode was turned off still age out. Each sweep that deletes something
// or fails says so in the log.
func startSweep(r config.Recording, every time.Duration, now func() time.Time, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			n, err := record.Sweep(r.Dir, r.Keep, now())
			if err != nil {
				log.Error("sweeping recordings", "dir", r.Dir, "deleted", n, "error", err)
			} else if n > 0 {
				log.Info("recordings swept", "dir", r.Dir, "deleted", n, "keep", config.FormatDuration(r.Keep))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// recordingCollectors are the metrics of recordings:
// vnum_recordings_total and vnum_recording_bytes_total.
func recordingCollectors(stats callStats) []prometheus.Collector {
	if stats.recordings == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "vnum", Name: "recordings_total",
			Help: "Call recordings written (closed at the call's end) since the start.",
		}, func() float64 { n, _ := stats.recordings(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "vnum", Name: "recording_bytes_total",
			Help: "Bytes of the call recordings written since the start (their WAV files).",
		}, func() float64 { _, b := stats.recordings(); return float64(b) }),
	}
}

// newRecordingCmd is `vnum recording get CDR_ID -o FILE.wav`.
func newRecordingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "recording", Short: "Fetch call recordings"}
	get := &cobra.Command{
		Use:   "get CDR_ID -o FILE.wav",
		Short: "Write a call's recording (a two-channel WAV: leg A, who dialled, left; leg B, who was dialled, right) to a new file or to standard output",
		Long: "Write the recording of the call whose record is CDR_ID to FILE.wav, read from recording.dir. " +
			"An existing FILE.wav is not overwritten (remove it first); the file appears whole or not at all. " +
			"With -o - the WAV goes to standard output.",
		Args: cobra.ExactArgs(1),
	}
	var out string
	get.Flags().StringVarP(&out, "output", "o", "", "the `FILE` to write (not overwritten), or - for standard output")
	if err := get.MarkFlagRequired("output"); err != nil {
		panic(err) // the flag is defined just above
	}
	get.RunE = func(cmd *cobra.Command, args []string) error {
		return withStore(cmd, func(ctx context.Context, s *binding.Store) error {
			f, err := s.OpenRecording(ctx, cfg.Recording.Dir, args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			if out == "-" {
				_, err := io.Copy(cmd.OutOrStdout(), f)
				return err
			}
			n, err := writeNew(out, f)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "recording of cdr %s written to %s (%d bytes)\n", args[0], out, n)
			return nil
		})
	}
	cmd.AddCommand(get)
	return cmd
}

// writeNew writes what r holds to the file path, which must not exist:
// to a temporary file beside it, synced, then linked in place, so that
// path never holds half a file and an existing one is never replaced
// (not even one made meanwhile). It returns the bytes written.
func writeNew(path string, r io.Reader) (int64, error) {
	if _, err := os.Lstat(path); err == nil {
		return 0, fmt.Errorf("%s exists; not overwritten (remove it, or name another file)", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, err
	}
	defer func() {
		if rerr := os.Remove(tmp.Name()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			slog.Debug("removing a temporary file", "file", tmp.Name(), "error", rerr)
		}
	}()
	n, err := io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return 0, fmt.Errorf("%s exists; not overwritten (remove it, or name another file)", path)
		}
		return 0, err
	}
	return n, nil
}
