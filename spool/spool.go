// Package spool keeps, on the node's own disk, the ends of calls whose
// record the store would not take (down, restarting, full), so that they
// outlive the process: a node stopped, or killed, during a store outage
// writes them at its next start instead of leaving its calls to be closed
// as interrupted, unbilled.
//
// A spool is one append-only file per node. Each line is an end put, or
// the note that an end reached the store; a line is a CRC-32 of its JSON
// and the JSON, so that a line cut short by a crash is known and skipped.
// An end is synced to disk before Put returns. The file is removed once
// every end in it has reached the store.
package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vnum/vnum/callrec"
)

// Spool is one node's spool. Its methods may be called from several
// goroutines; one process of a node uses it at a time (the node's lease
// in the store says which).
type Spool struct {
	path string

	mu      sync.Mutex
	f       *os.File // open for appending from the first Put or Done
	pending map[string]bool
	left    []callrec.Record
	skipped int
	// whole is the length of the whole lines an earlier process left,
	// when a line cut short follows them; -1 when none does.
	whole int64
}

// FileName is the name of node's spool file: "cdrs-" and the node, each
// byte outside letters, digits, '.', '-' and '_' written as %XX, then
// ".spool". Distinct nodes get distinct names, and none leaves the
// directory.
func FileName(node string) string {
	var b strings.Builder
	for i := 0; i < len(node); i++ {
		c := node[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return "cdrs-" + b.String() + ".spool"
}

// Open opens node's spool in dir. It creates dir when it is missing and
// checks that this process may write there: a spool it could not write
// would lose the ends it is for. It reads what an earlier process of the
// node left (Left): the ends put and not marked done, oldest first. Lines
// that cannot be read are skipped and counted (Skipped). Open changes
// nothing in the file: a process that opens it may yet find that another
// serves the node (the node's lease), and only the one that does writes
// it, from its first Put, Done or Tidy.
func Open(dir, node string) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	probe, err := os.CreateTemp(dir, ".spool-probe-*")
	if err != nil {
		return nil, fmt.Errorf("spool: cannot write in %s: %w", dir, err)
	}
	err = errors.Join(probe.Close(), os.Remove(probe.Name()))
	if err != nil {
		return nil, fmt.Errorf("spool: cannot write in %s: %w", dir, err)
	}
	s := &Spool{path: filepath.Join(dir, FileName(node)), pending: map[string]bool{}, whole: -1}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// entry is one line of the file: an end put, or one marked done.
type entry struct {
	End  *record `json:"end,omitempty"`
	Done string  `json:"done,omitempty"`
}

// record is a call's end as the spool keeps it: every field of the
// record that signalling fills in. Talk time, minutes and fee are the
// store's to compute when it takes the end.
type record struct {
	ID          string    `json:"id"`
	CallID      string    `json:"call_id"`
	Node        string    `json:"node"`
	Merchant    string    `json:"merchant"`
	BindingID   string    `json:"binding"`
	Order       string    `json:"order"`
	Host        string    `json:"host"`
	Extension   string    `json:"extension"`
	Direction   string    `json:"direction"`
	Caller      string    `json:"caller"`
	CallerKind  string    `json:"caller_kind"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	RingingAt   time.Time `json:"ringing_at,omitzero"`
	AnsweredAt  time.Time `json:"answered_at,omitzero"`
	EndedAt     time.Time `json:"ended_at,omitzero"`
	Disposition string    `json:"disposition"`
	HangupBy    string    `json:"hangup_by"`
	SIPStatus   int       `json:"sip_status"`
	Recorded    bool      `json:"recorded,omitempty"`
}

func fromRecord(r callrec.Record) *record {
	return &record{ID: r.ID, CallID: r.CallID, Node: r.Node, Merchant: r.Merchant, BindingID: r.BindingID,
		Order: r.Order, Host: r.Host, Extension: r.Extension, Direction: string(r.Direction), Caller: r.Caller,
		CallerKind: string(r.CallerKind), StartedAt: r.StartedAt, RingingAt: r.RingingAt, AnsweredAt: r.AnsweredAt,
		EndedAt: r.EndedAt, Disposition: string(r.Disposition), HangupBy: string(r.HangupBy), SIPStatus: r.SIPStatus,
		Recorded: r.Recorded}
}

func (r *record) toRecord() callrec.Record {
	return callrec.Record{ID: r.ID, CallID: r.CallID, Node: r.Node, Merchant: r.Merchant, BindingID: r.BindingID,
		Order: r.Order, Host: r.Host, Extension: r.Extension, Direction: callrec.Direction(r.Direction),
		Caller: r.Caller, CallerKind: callrec.CallerKind(r.CallerKind), StartedAt: r.StartedAt.UTC(),
		RingingAt: r.RingingAt.UTC(), AnsweredAt: r.AnsweredAt.UTC(), EndedAt: r.EndedAt.UTC(),
		Disposition: callrec.Disposition(r.Disposition), HangupBy: callrec.HangupBy(r.HangupBy), SIPStatus: r.SIPStatus,
		Recorded: r.Recorded}
}

// line is e as one line of the file: the CRC-32 (IEEE) of its JSON in
// hex, a space, the JSON, a newline.
func line(e entry) ([]byte, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	out := fmt.Appendf(nil, "%08x ", crc32.ChecksumIEEE(body))
	out = append(out, body...)
	return append(out, '\n'), nil
}

// parse reads one line without its newline; ok is false for a line that
// is not one the spool wrote whole.
func parse(l []byte) (e entry, ok bool) {
	sum, body, found := bytes.Cut(l, []byte(" "))
	if !found || len(sum) != 8 {
		return entry{}, false
	}
	var want uint32
	if _, err := fmt.Sscanf(string(sum), "%08x", &want); err != nil || crc32.ChecksumIEEE(body) != want {
		return entry{}, false
	}
	if err := json.Unmarshal(body, &e); err != nil || (e.End == nil) == (e.Done == "") ||
		(e.End != nil && e.End.ID == "") {
		return entry{}, false
	}
	return e, true
}

// load reads the file an earlier process left, if any.
func (s *Spool) load() error {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	whole := bytes.LastIndexByte(data, '\n') + 1
	ends := map[string]callrec.Record{}
	var order []string
	for _, l := range bytes.Split(data[:whole], []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		e, ok := parse(l)
		switch {
		case !ok:
			s.skipped++
		case e.End != nil:
			if _, seen := ends[e.End.ID]; !seen {
				order = append(order, e.End.ID)
			}
			ends[e.End.ID] = e.End.toRecord()
		default:
			delete(ends, e.Done)
		}
	}
	if whole < len(data) {
		// A crash in mid-write: the torn line goes before anything is
		// appended.
		s.skipped++
		s.whole = int64(whole)
	}
	for _, id := range order {
		if r, ok := ends[id]; ok {
			s.left = append(s.left, r)
			s.pending[id] = true
		}
	}
	return nil
}

// Tidy puts the file an earlier process left in order, as the process
// that now serves the node: it removes the file when nothing in it is
// pending (every end reached the store), and otherwise cuts off a line
// cut short, so that what is appended later starts a line of its own.
func (s *Spool) Tidy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return s.remove()
	}
	return s.cutTorn()
}

// cutTorn cuts a torn last line off the file, once.
func (s *Spool) cutTorn() error {
	if s.whole < 0 {
		return nil
	}
	if err := os.Truncate(s.path, s.whole); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.whole = -1
	return nil
}

// Path is the spool's file.
func (s *Spool) Path() string { return s.path }

// Left returns the ends an earlier process of the node put and did not
// mark done, oldest first. Each is pending until Done.
func (s *Spool) Left() []callrec.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []callrec.Record
	for _, r := range s.left {
		if s.pending[r.ID] {
			out = append(out, r)
		}
	}
	return out
}

// Skipped is how many lines of the earlier process's file could not be
// read (cut short by a crash, or damaged).
func (s *Spool) Skipped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

// Len is how many ends are pending: put (now or by an earlier process)
// and not yet done.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Put keeps r's end, and returns once it is on disk.
func (s *Spool) Put(r callrec.Record) error {
	if r.ID == "" {
		return errors.New("spool: a record without an id")
	}
	l, err := line(entry{End: fromRecord(r)})
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.append(l, true); err != nil {
		return err
	}
	s.pending[r.ID] = true
	return nil
}

// Done notes that the end of record id is in the store. Once no end is
// pending, the file is removed. The note is not synced: lost in a crash,
// the end is written again at the next start, which changes nothing in
// the store.
func (s *Spool) Done(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pending[id] {
		return nil
	}
	delete(s.pending, id)
	if len(s.pending) == 0 {
		return s.remove()
	}
	l, err := line(entry{Done: id})
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return s.append(l, false)
}

// append writes one line, synced when sync; the file is created on the
// first (and its directory synced, so that a crash keeps its name).
func (s *Spool) append(l []byte, sync bool) error {
	if s.f == nil {
		if err := s.cutTorn(); err != nil {
			return err
		}
		_, statErr := os.Stat(s.path)
		f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.f = f
		if errors.Is(statErr, fs.ErrNotExist) {
			if err := syncDir(filepath.Dir(s.path)); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
		}
	}
	if _, err := s.f.Write(l); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if sync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	return nil
}

// remove deletes the file once nothing in it is pending.
func (s *Spool) remove() error {
	var errs []error
	if s.f != nil {
		errs = append(errs, s.f.Close())
		s.f = nil
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	s.left, s.whole = nil, -1
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Close closes the file; what is pending stays in it for the next start.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// syncDir syncs a directory, so that a file just created in it survives
// a crash of the machine.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
