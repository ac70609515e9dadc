package sip

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media/record"
	"github.com/vnum/vnum/protection"
)

// Recording in the call's script: at the bridge the call asks whether it
// is recorded (recording.mode, and in merchant mode the merchant's own
// protection); a recorded call is announced to both sides before the
// bridge (announce), then a record.Writer is begun and fed both
// directions by the relay through each stream's tap (startRecording),
// and is closed when the streams are (stopRecording). The writer works
// off the relay's path: a slow disk drops packets from the recording,
// never delays one between the parties.

// errNoRecordingDir means a recorded call's file has no folder to go to.
var errNoRecordingDir = errors.New("recording.dir is empty")

// recordings is the server's part in recording calls: the mode and the
// folder, and what was written (vnum_recordings_total,
// vnum_recording_bytes_total).
type recordings struct {
	mode config.RecordingMode
	dir  string
	// written counts the recordings closed; bytes the size of their files.
	written, bytes atomic.Int64
}

// wants reports whether a call under policy is recorded: every call in
// mode on, a merchant's that asked for it (record) in mode merchant.
func (r *recordings) wants(policy protection.Policy) bool {
	if r == nil {
		return false
	}
	switch r.mode {
	case config.RecordOn:
		return true
	case config.RecordMerchant:
		return policy.Record
	}
	return false
}

// create begins the file of call id's recording, which starts at start.
func (r *recordings) create(id string, start time.Time) (*record.Writer, error) {
	name, ok := callrec.RecordingFile(id)
	if !ok {
		return nil, errors.New("recording: a call id that names no file")
	}
	if r.dir == "" {
		return nil, errNoRecordingDir
	}
	return record.Create(filepath.Join(r.dir, name), start, record.Options{})
}

// closed counts a recording written, of size bytes.
func (r *recordings) closed(size int64) {
	r.written.Add(1)
	r.bytes.Add(size)
}

// recordingChoiceOf is r's RecordingChoice, or nil when it has none.
func recordingChoiceOf(r Router) RecordingChoice {
	if c, ok := r.(RecordingChoice); ok {
		return c
	}
	return nil
}

// callbackRecorded notes in the call's policy whether the merchant of a
// consignee's call back asked for its calls to be recorded, which
// consignee protection (not asked on a call back) does not say. Only
// recording.mode merchant asks the store; a store that does not answer
// leaves the call unrecorded, logged.
func (c *call) callbackRecorded(merchant string) {
	r := c.deps.recordings
	if r == nil || r.mode != config.RecordMerchant || c.deps.recordChoice == nil {
		return
	}
	ctx, cancel := c.deps.opts.storeTimeout.ctx(c.ctx)
	record, err := c.deps.recordChoice.RecordsCalls(ctx, merchant)
	cancel()
	if err != nil {
		c.log.Warn("whether the merchant records its calls; the call back is not recorded", "error", err)
		return
	}
	c.policy.Record = record
}

// decideRecording decides whether the call is recorded, once, when B
// answers: the notice and the bridge follow from it.
func (c *call) decideRecording() {
	c.recorded = c.deps.recordings.wants(c.policy)
}

// startRecording begins the call's recording at the bridge, before the
// relay runs: each leg's stream hands the writer what it relays (the
// leg A on the left channel, leg B on the right: on a call back the consignee is leg A), and the CDR
// says the call is recorded from the write that marks its answer. A
// recording that cannot be begun is logged and the call goes on
// unrecorded.
func (c *call) startRecording() {
	if !c.recorded || c.rec != nil {
		return
	}
	w, err := c.deps.recordings.create(c.id, time.Now())
	if err != nil {
		c.log.Error("recording not started; the call goes on unrecorded", "error", err)
		return
	}
	c.rec = w
	c.cdr.Recorded = true
	c.a.stream.SetTap(w.Tap(record.Caller))
	c.b.stream.SetTap(w.Tap(record.Callee))
	c.log.Info("recording started")
}

// stopRecording closes the call's recording once its streams are closed
// (no packet comes to it any more): what is queued is written, the
// header fixed, the file synced. It waits recordingClose at most: a disk
// that hangs (a stalled network mount) keeps the writer, not the call.
func (c *call) stopRecording() {
	w := c.rec
	if w == nil {
		return
	}
	c.rec = nil
	log, recs, h := c.log, c.deps.recordings, c.h
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer h.guardGo("recording close")
		err := w.Close()
		recs.closed(w.Size())
		attrs := []any{"duration_ms", w.Duration().Milliseconds(), "bytes", w.Size(), "dropped", w.Dropped()}
		if err != nil {
			log.Error("recording", append(attrs, "error", err)...)
			return
		}
		log.Info("recording written", attrs...)
	}()
	t := time.NewTimer(recordingClose)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Warn("recording: the disk has not finished the file; the call ends without waiting", "after", recordingClose)
	}
}

// recordingClose is how long a call's end waits for its recording's file.
const recordingClose = 10 * time.Second
