package spool

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/internal/testdisk"
)

var t0 = time.Date(2026, 11, 1, 8, 0, 0, 123456789, time.UTC)

// end is a call's end as signalling hands it over.
func end(id string) callrec.Record {
	return callrec.Record{ID: id, CallID: "a-" + id + "@10.0.0.5", Node: "vnum-a", Merchant: "m1", BindingID: "b_1",
		Order: "o-1", Host: "17000000001", Extension: "1234", Direction: callrec.DirectionToConsignee,
		Caller: "alice", CallerKind: callrec.CallerAccount, StartedAt: t0, RingingAt: t0.Add(time.Second),
		AnsweredAt: t0.Add(3 * time.Second), EndedAt: t0.Add(95 * time.Second),
		Disposition: callrec.DispositionAnswered, HangupBy: callrec.HangupCaller, SIPStatus: 200, Recorded: true}
}

func open(t *testing.T, dir string) *Spool {
	t.Helper()
	s, err := Open(dir, "vnum-a")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// TestEndsOutliveTheProcess: ends put and not done are what the next
// process of the node finds, whole and in order; ends done are not; the
// file goes once nothing in it is pending.
func TestEndsOutliveTheProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	require.Empty(t, s.Left())
	_, err := os.Stat(s.Path())
	require.ErrorIs(t, err, os.ErrNotExist, "nothing put, no file")

	for _, id := range []string{"c_1", "c_2", "c_3"} {
		require.NoError(t, s.Put(end(id)))
	}
	require.NoError(t, s.Done("c_2"))
	require.NoError(t, s.Done("c_nope"), "an end never put is no error")
	require.Equal(t, 2, s.Len())
	fi, err := os.Stat(s.Path())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "billing data, the node's only")
	require.NoError(t, s.Close()) // the process stops (or dies: every Put is synced)

	next := open(t, dir)
	require.Equal(t, []callrec.Record{end("c_1"), end("c_3")}, next.Left())
	require.Zero(t, next.Skipped())
	require.Equal(t, 2, next.Len())
	require.NoError(t, next.Done("c_1"))
	require.Equal(t, []callrec.Record{end("c_3")}, next.Left())
	require.NoError(t, next.Put(end("c_4")))
	require.NoError(t, next.Done("c_3"))
	require.NoError(t, next.Done("c_4"))
	_, err = os.Stat(next.Path())
	require.ErrorIs(t, err, os.ErrNotExist, "all written: the file is removed")
	require.Empty(t, open(t, dir).Left())
}

// TestOpenChangesNothing: opening a spool (a second process of a node
// that another serves) changes nothing in the file; Tidy, by the process
// that serves the node, removes a file with nothing pending.
func TestOpenChangesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	require.NoError(t, s.Put(end("c_1")))
	require.NoError(t, s.Put(end("c_2")))
	require.NoError(t, s.Done("c_1"))
	before, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	torn := append(before, `0000`...) // a writer in mid-line
	require.NoError(t, os.WriteFile(s.Path(), torn, 0o600))

	other := open(t, dir)
	require.Equal(t, []callrec.Record{end("c_2")}, other.Left())
	after, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	require.Equal(t, torn, after, "Open wrote nothing")

	require.NoError(t, other.Tidy())
	after, err = os.ReadFile(s.Path())
	require.NoError(t, err)
	require.Equal(t, before, after, "Tidy cut the torn line")
	require.NoError(t, other.Done("c_2"))
	require.NoError(t, open(t, dir).Tidy())
	_, err = os.Stat(s.Path())
	require.ErrorIs(t, err, os.ErrNotExist)

	// A file whose every end is done (its last Done lost in a crash is
	// not that: Done removes instead of writing the last note) goes.
	require.NoError(t, os.WriteFile(s.Path(), []byte("garbage\n"), 0o600))
	last := open(t, dir)
	require.Equal(t, 1, last.Skipped())
	require.NoError(t, last.Tidy())
	_, err = os.Stat(s.Path())
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestTornLine: a crash in mid-write leaves a line cut short; the next
// process skips it and counts it, keeps every whole line, and what it
// appends starts a line of its own. A damaged line is skipped too.
func TestTornLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	require.NoError(t, s.Put(end("c_1")))
	require.NoError(t, s.Put(end("c_2")))
	require.NoError(t, s.Close())
	data, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	// c_2's line loses its tail; a stray line of garbage before it.
	first := len(data) / 2
	for data[first-1] != '\n' {
		first--
	}
	torn := append(append(append([]byte{}, data[:first]...), "deadbeef {\"end\":{}}\n"...), data[first:len(data)-10]...)
	require.NoError(t, os.WriteFile(s.Path(), torn, 0o600))

	next := open(t, dir)
	require.Equal(t, []callrec.Record{end("c_1")}, next.Left())
	require.Equal(t, 2, next.Skipped())
	require.NoError(t, next.Put(end("c_3")))
	require.NoError(t, next.Close())
	require.Equal(t, []callrec.Record{end("c_1"), end("c_3")}, open(t, dir).Left())
}

// TestFileName: one file per node, whatever its id holds.
func TestFileName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "cdrs-vnum-sh-1.spool", FileName("vnum-sh-1"))
	require.Equal(t, "cdrs-host.example_2.spool", FileName("host.example_2"))
	require.Equal(t, "cdrs-..%2Fetc%2Fx.spool", FileName("../etc/x"))
	require.Equal(t, "cdrs-.spool", FileName(""))
	require.NotEqual(t, FileName("a/b"), FileName("a%2Fb"))
}

// TestFullDiskAndBadDir: on a full disk (a tmpfs of its own) Put fails,
// and works again once there is space; a directory that cannot be made
// or written is refused when the spool is opened, not found out in an
// outage.
func TestFullDiskAndBadDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testdisk.Mount(t, 1<<20), "spool")
	require.NoError(t, os.Mkdir(dir, 0o755))
	free := testdisk.Fill(t, filepath.Dir(dir))
	// A full disk still creates files (tmpfs has inodes left): what it
	// refuses is the Put.
	s, err := Open(dir, "vnum-a")
	require.NoError(t, err)
	require.Error(t, s.Put(end("c_1")), "a full disk keeps nothing")
	free()
	require.NoError(t, s.Put(end("c_1")))
	require.NoError(t, s.Close())

	_, err = Open(filepath.Join(s.Path(), "sub"), "vnum-a") // a file where a directory should be
	require.Error(t, err)
}
