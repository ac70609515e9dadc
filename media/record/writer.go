// Package record writes the audio of a bridged call to a two-channel WAV
// file, leg A (whoever dialled vnum) on the left channel and leg B on the right,
// fed packet by packet by the relay and written off its path.
//
// The relay hands each packet to Writer.Packet (through the media.Tap
// that Writer.Tap gives each side's stream), which copies it into a queue
// and returns at once, waking no one: the writer's goroutine takes what
// is queued every 20 ms. A slow disk fills the queue and drops
// packets from the recording, never delays one on its way to the other
// party. A goroutine of the writer's own places each packet's samples in
// the file where its RTP timestamp puts them, so the two channels stay
// aligned and a gap (silence suppression, loss, one side muted) is silence
// of the right length rather than squeezed out. The file has a valid
// header from the start and its sizes are fixed every second, so a crash
// (kill -9) leaves a playable file of what was recorded up to then.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vnum/vnum/media"
)

// Side is one channel of a recording.
type Side int

// The two sides of a call, the channels of its file.
const (
	// Caller is leg A: the merchant, courier or calling-back consignee
	// (the left channel).
	Caller Side = iota
	// Callee is leg B: the party vnum dialled (the right channel).
	Callee
)

// The file's format: 8 kHz, two channels of 16-bit PCM.
const (
	rate       = 8000
	channels   = 2
	frameBytes = 2 * channels
	headerSize = 44
	// maxFrames keeps the data within the 4 GiB a WAV header can count.
	maxFrames = (1<<32 - 1 - headerSize) / frameBytes
	// reanchor is how far a packet's place by its timestamp may stray
	// from its place by its arrival before the arrival wins: a sender
	// that jumped its timestamps, or a new stream.
	reanchor = 2 * rate
)

// Defaults of Options.
const (
	// DefaultQueue is how many packets wait for the writer at most.
	DefaultQueue = 512
	// DefaultFixEvery is how often the header's sizes are brought up to
	// date.
	DefaultFixEvery = time.Second
)

// drainEvery is how often the writer's goroutine takes the packets
// queued: one wake-up for every few packets rather than one for each,
// which would cost the relay's machine more than the writing.
const drainEvery = 20 * time.Millisecond

// Options configures a Writer; the zero value takes the defaults.
type Options struct {
	// Queue is how many packets may wait for the disk before new ones are
	// dropped from the recording.
	Queue int
	// FixEvery is how often the header's sizes are fixed, so that a file
	// cut by a crash plays up to that point.
	FixEvery time.Duration
}

// packet is one RTP packet's audio on its way to the file.
type packet struct {
	side    Side
	pt      uint8
	ssrc    uint32
	ts      uint32
	arrival time.Time
	payload []byte
}

// batch is packets queued for the writer, their payloads in one buffer.
type batch struct {
	pkts []packet
	data []byte
}

// track is where one side's packets go: its stream's timestamp at an
// anchor frame of the file.
type track struct {
	started  bool
	ssrc     uint32
	lastTS   uint32
	ext      int64 // lastTS unwrapped, from the anchor
	anchorAt int64 // the file's frame of the anchor
}

// Writer records one call. Packet may be called from any goroutine;
// Close once, after the last Packet.
type Writer struct {
	f     *os.File
	start time.Time
	limit int // Options.Queue
	// mu guards queued and closed: Packet appends, the writer's goroutine
	// takes the whole batch (take).
	mu      sync.Mutex
	queued  batch
	closed  bool
	stop    chan struct{} // closed by Close
	done    chan struct{}
	dropped atomic.Uint64
	closing sync.Once

	// owned by the writer's goroutine
	spare  batch // the batch taken last, its room used again
	tracks [2]track
	frames int64 // the file's length in frames
	fixed  int64 // frames the header counts
	err    error
	buf    []byte
	// win holds the frames from winAt on (window of them at most),
	// dirty when it has some the file has not.
	win   []byte
	winAt int64
	dirty bool
}

// Create creates the WAV file at path (not there before: an existing file
// is an error) for a recording that starts at start, the moment of the
// bridge: frame 0. Its header is written at once.
func Create(path string, start time.Time, o Options) (*Writer, error) {
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.FixEvery <= 0 {
		o.FixEvery = DefaultFixEvery
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	w := &Writer{f: f, start: start, limit: o.Queue, stop: make(chan struct{}), done: make(chan struct{})}
	if _, err := f.WriteAt(header(0), 0); err != nil {
		return nil, errors.Join(fmt.Errorf("recording: %w", err), f.Close(), os.Remove(path))
	}
	go w.run(o.FixEvery)
	return w, nil
}

// Packet hands the writer the audio of one RTP packet that side sent (a
// G.711 payload: PCMU or PCMA by its payload type pt; others are
// skipped), with its SSRC, timestamp and time of arrival. It copies the
// payload and never blocks: it returns false when the queue is full and
// the packet is left out of the recording (counted by Dropped).
func (w *Writer) Packet(side Side, pt uint8, ssrc, ts uint32, arrival time.Time, payload []byte) bool {
	if side != Caller && side != Callee {
		return false
	}
	w.mu.Lock()
	if w.closed || len(w.queued.pkts) >= w.limit {
		w.mu.Unlock()
		w.dropped.Add(1)
		return false
	}
	// The payload is copied into the batch's buffer; an earlier packet's
	// slice of it stays valid when the buffer grows (it keeps the old
	// array, whose bytes never change).
	from := len(w.queued.data)
	w.queued.data = append(w.queued.data, payload...)
	w.queued.pkts = append(w.queued.pkts, packet{side: side, pt: pt, ssrc: ssrc, ts: ts, arrival: arrival,
		payload: w.queued.data[from:len(w.queued.data):len(w.queued.data)]})
	w.mu.Unlock()
	return true
}

// Tap returns what feeds side of the recording from the relay: set on
// that side's stream (media.Stream.SetTap), it is handed each packet the
// stream relays and passes it to Packet.
func (w *Writer) Tap(side Side) media.Tap { return sideTap{w: w, side: side} }

// sideTap is one side's media.Tap of a Writer.
type sideTap struct {
	w    *Writer
	side Side
}

// Packet hands the packet to the writer as its side's (Writer.Packet).
func (t sideTap) Packet(pt uint8, ssrc, ts uint32, arrival time.Time, payload []byte) bool {
	return t.w.Packet(t.side, pt, ssrc, ts, arrival, payload)
}

// Dropped returns how many packets were left out because the writer was
// behind.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Close writes what is queued, fixes the header, syncs and closes the
// file, and returns the first error the writer met.
func (w *Writer) Close() error {
	w.closing.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.stop)
	})
	<-w.done
	return w.err
}

// Duration returns the recording's length so far. It is only to be read
// after Close.
func (w *Writer) Duration() time.Duration {
	return time.Duration(w.frames) * time.Second / rate
}

// Size returns the recording's file size in bytes: its header and
// frames. It is only to be read after Close.
func (w *Writer) Size() int64 { return headerSize + w.frames*frameBytes }

// run writes the queued packets every drainEvery and fixes the header
// every fixEvery; at Close it writes the last ones, fixes the header,
// syncs and closes the file.
func (w *Writer) run(fixEvery time.Duration) {
	defer close(w.done)
	drain := time.NewTicker(drainEvery)
	defer drain.Stop()
	fix := time.NewTicker(fixEvery)
	defer fix.Stop()
	for {
		select {
		case <-w.stop:
			w.take()
			w.fail(w.fix())
			w.fail(w.f.Sync())
			w.fail(w.f.Close())
			return
		case <-drain.C:
			w.take()
		case <-fix.C:
			w.fail(w.fix())
		}
	}
}

// take writes the packets queued since it last ran, and hands their
// batch's room back to Packet.
func (w *Writer) take() {
	w.mu.Lock()
	b := w.queued
	w.queued = batch{pkts: w.spare.pkts[:0], data: w.spare.data[:0]}
	w.mu.Unlock()
	for _, p := range b.pkts {
		w.fail(w.write(p))
	}
	clear(b.pkts) // no payload kept alive by the room
	w.spare = b
}

// fail keeps the first error.
func (w *Writer) fail(err error) {
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("recording: %w", err)
	}
}

// place returns the file frame of p's first sample: by its timestamp
// from its side's anchor, or by its arrival when it starts the side, a
// new stream (SSRC), or strays more than reanchor from its arrival.
func (w *Writer) place(p packet) int64 {
	byArrival := int64(p.arrival.Sub(w.start)) * rate / int64(time.Second)
	t := &w.tracks[p.side]
	if !t.started || t.ssrc != p.ssrc {
		*t = track{started: true, ssrc: p.ssrc, lastTS: p.ts, anchorAt: byArrival}
		return byArrival
	}
	t.ext += int64(int32(p.ts - t.lastTS))
	t.lastTS = p.ts
	at := t.anchorAt + t.ext
	if d := at - byArrival; d > reanchor || d < -reanchor {
		*t = track{started: true, ssrc: p.ssrc, lastTS: p.ts, anchorAt: byArrival}
		return byArrival
	}
	return at
}

// write puts p's samples in its channel at its place, keeping the other
// channel's samples there (a hole reads as zeros: silence). The frames
// about the newest are kept in memory (the window) and reach the file at
// the next fix: a packet costs a copy, not a read and a write of the
// file. A packet placed before the window (one that came very late) is
// written to the file at once.
func (w *Writer) write(p packet) error {
	var pcm []int16
	switch p.pt {
	case 0:
		pcm = media.DecodeULaw(p.payload)
	case 8:
		pcm = media.DecodeALaw(p.payload)
	default:
		return nil
	}
	at := w.place(p)
	if at < 0 {
		if -at >= int64(len(pcm)) {
			return nil
		}
		pcm, at = pcm[-at:], 0
	}
	end := at + int64(len(pcm))
	if end > maxFrames {
		return nil
	}
	if end > w.winAt+window {
		if err := w.slide(end); err != nil {
			return err
		}
	}
	if at < w.winAt {
		// What comes before the window goes to the file as it is.
		n := min(w.winAt-at, int64(len(pcm)))
		if err := w.writeFile(p.side, at, pcm[:n]); err != nil {
			return err
		}
		pcm, at = pcm[n:], at+n
	}
	if len(pcm) > 0 {
		w.writeWindow(p.side, at, pcm)
	}
	w.frames = max(w.frames, end)
	return nil
}

// window is how many frames the writer keeps in memory (one second, 32
// KB): enough for the two sides' packets of the same moment to meet
// there, whatever order they come in.
const window = rate

// writeWindow puts pcm in side's channel of the window from frame at
// (within it), growing the window's length with silence as needed.
func (w *Writer) writeWindow(side Side, at int64, pcm []int16) {
	off := int(at-w.winAt) * frameBytes
	if need := off + len(pcm)*frameBytes; need > len(w.win) {
		w.win = append(w.win, make([]byte, need-len(w.win))...)
	}
	ch := off + int(side)*2
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(w.win[ch+i*frameBytes:], uint16(s))
	}
	w.dirty = true
}

// slide moves the window on so that it ends at or after end: what it
// held is written to the file, and its newest half is kept (the other
// side's packets of the same moment may still come).
func (w *Writer) slide(end int64) error {
	if err := w.flush(); err != nil {
		return err
	}
	from := end - window/2
	held := w.winAt + int64(len(w.win)/frameBytes)
	if from < held {
		kept := w.win[int(from-w.winAt)*frameBytes:]
		w.win = append(w.win[:0], kept...)
	} else {
		w.win = w.win[:0]
	}
	w.winAt = from
	return nil
}

// flush writes the window to the file.
func (w *Writer) flush() error {
	if !w.dirty {
		return nil
	}
	if _, err := w.f.WriteAt(w.win, headerSize+w.winAt*frameBytes); err != nil {
		return err
	}
	w.dirty = false
	return nil
}

// writeFile puts pcm in side's channel of the file from frame at,
// keeping the other channel's samples there.
func (w *Writer) writeFile(side Side, at int64, pcm []int16) error {
	n := len(pcm) * frameBytes
	if cap(w.buf) < n {
		w.buf = make([]byte, n)
	}
	b := w.buf[:n]
	off := headerSize + at*frameBytes
	got, err := w.f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	clear(b[got:])
	ch := int(side) * 2
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[i*frameBytes+ch:], uint16(s))
	}
	_, err = w.f.WriteAt(b, off)
	return err
}

// fix writes the window to the file, then the header with the sizes of
// the frames written so far: the header never counts frames that are not
// in the file.
func (w *Writer) fix() error {
	if err := w.flush(); err != nil {
		return err
	}
	if w.fixed == w.frames {
		return nil
	}
	if _, err := w.f.WriteAt(header(w.frames), 0); err != nil {
		return err
	}
	w.fixed = w.frames
	return nil
}

// header is a canonical 44-byte WAV header for frames frames of 8 kHz
// two-channel 16-bit PCM.
func header(frames int64) []byte {
	data := uint32(frames * frameBytes)
	h := make([]byte, 0, headerSize)
	h = append(h, "RIFF"...)
	h = binary.LittleEndian.AppendUint32(h, 36+data)
	h = append(h, "WAVEfmt "...)
	h = binary.LittleEndian.AppendUint32(h, 16)
	h = binary.LittleEndian.AppendUint16(h, 1) // PCM
	h = binary.LittleEndian.AppendUint16(h, channels)
	h = binary.LittleEndian.AppendUint32(h, rate)
	h = binary.LittleEndian.AppendUint32(h, rate*frameBytes)
	h = binary.LittleEndian.AppendUint16(h, frameBytes)
	h = binary.LittleEndian.AppendUint16(h, 16)
	h = append(h, "data"...)
	h = binary.LittleEndian.AppendUint32(h, data)
	return h
}
