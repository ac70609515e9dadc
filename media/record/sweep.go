package record

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Sweep deletes the recordings in dir (its .wav files; nothing else,
// nothing below it) last written before now minus keep, and returns how
// many it deleted. A file it cannot delete is named in the error, and the
// others are still swept; a missing dir holds nothing to sweep.
func Sweep(dir string, keep time.Duration, now time.Time) (int, error) {
	if keep <= 0 {
		return 0, fmt.Errorf("recording sweep: keep %s: want a positive duration", keep)
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recording sweep: %w", err)
	}
	before := now.Add(-keep)
	n := 0
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".wav") {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // gone meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !info.ModTime().Before(before) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("recording sweep: %w", err)
	}
	return n, nil
}
