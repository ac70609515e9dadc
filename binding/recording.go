package binding

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vnum/vnum/callrec"
)

// ErrNoRecording reports a call record that has no recording to hand
// out: the call was not recorded, or its file was deleted after
// recording.keep. It is an ErrNotFound too.
var ErrNoRecording error = noRecording{}

// noRecording is ErrNoRecording: "no recording", and an ErrNotFound.
type noRecording struct{}

func (noRecording) Error() string        { return "no recording" }
func (noRecording) Is(target error) bool { return target == ErrNotFound }

// OpenRecording opens the recording of the call whose record is id, in
// the folder dir (recording.dir), for the admin API and the CLI to hand
// out. An unknown record is ErrNotFound; a record with no recording, or
// whose file is gone, ErrNoRecording, each naming the record. The caller
// closes the file.
func (s *Store) OpenRecording(ctx context.Context, dir, id string) (*os.File, error) {
	name, ok := callrec.RecordingFile(id)
	if !ok {
		return nil, fmt.Errorf("cdr %q: %w", id, ErrNotFound)
	}
	c, err := s.GetCDR(ctx, id)
	if err != nil {
		return nil, err
	}
	if !c.Recorded {
		return nil, fmt.Errorf("cdr %s: %w: the call was not recorded", id, ErrNoRecording)
	}
	f, err := os.Open(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cdr %s: %w: its file is no longer kept (recording.keep) or is not in recording.dir",
			id, ErrNoRecording)
	}
	if err != nil {
		return nil, fmt.Errorf("cdr %s: recording: %w", id, err)
	}
	return f, nil
}
