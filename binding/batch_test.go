package binding

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// startCall is a call's first write, as signalling makes it.
func startCall(ctx context.Context, s *Store, id string) error {
	return s.StartCDR(ctx, &callrec.Record{ID: id, CallID: id, Merchant: "m1", Host: "17000000001",
		Direction: callrec.DirectionToConsignee, Caller: "alice", StartedAt: t0})
}

// holdWriter takes SQLite's write turn (lockWrite) as a transaction of
// the process would, until the returned function is called: the group
// writer waits behind it while statements queue.
func holdWriter(t *testing.T, s *Store) func() {
	t.Helper()
	unlock, err := s.db.lockWrite(context.Background())
	require.NoError(t, err)
	return unlock
}

// TestGroupedWrites: many calls writing at once on SQLite are committed
// together in groups, every write there once it returns.
func TestGroupedWrites(t *testing.T) {
	s, _ := openTest(t)
	seed(t, s)
	ctx := context.Background()
	const calls = 200
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- startCall(ctx, s, fmt.Sprintf("c_%016x", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for i := range calls {
		_, err := s.GetCDR(ctx, fmt.Sprintf("c_%016x", i))
		require.NoError(t, err, "every write acknowledged is in the store")
	}
	require.Positive(t, s.db.group.grouped.Load(), "writes that met in the queue went in one transaction")
}

// TestGroupedWriteFails: one statement of a group fails (a record whose
// id is taken): its caller gets its own error, and every other statement
// of the group is committed.
func TestGroupedWriteFails(t *testing.T) {
	s, _ := openTest(t)
	seed(t, s)
	ctx := context.Background()
	require.NoError(t, startCall(ctx, s, "c_taken"))

	release := holdWriter(t, s)
	lead := make(chan error, 1)
	go func() { lead <- startCall(ctx, s, "c_lead") }()
	require.Eventually(t, func() bool { return len(s.db.group.writes) == 0 && s.db.group.waiting.Load() == 1 },
		5*time.Second, time.Millisecond, "the writer holds the first write, waiting for its turn")
	ids := []string{"c_0000000000000001", "c_0000000000000002", "c_taken", "c_0000000000000003"}
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = startCall(ctx, s, id)
		}()
	}
	// They queue behind it and make the next group.
	require.Eventually(t, func() bool { return len(s.db.group.writes) == len(ids) }, 5*time.Second, time.Millisecond)
	release()
	wg.Wait()
	require.NoError(t, <-lead)
	require.EqualValues(t, 0, s.db.group.grouped.Load(), "the failed group was written statement by statement")
	for i, id := range ids {
		if id == "c_taken" {
			require.ErrorIs(t, errs[i], ErrExists)
			continue
		}
		require.NoError(t, errs[i], id)
		_, err := s.GetCDR(ctx, id)
		require.NoError(t, err, "%s is committed though another statement of its group failed", id)
	}
}

// TestGroupedWriteGivenUp: a write whose caller stops waiting before the
// writer takes it is never made, so its error means what an error of a
// single write always meant: nothing was written.
func TestGroupedWriteGivenUp(t *testing.T) {
	s, _ := openTest(t)
	seed(t, s)
	release := holdWriter(t, s)
	first := make(chan error, 1)
	go func() { first <- startCall(context.Background(), s, "c_first") }()
	require.Eventually(t, func() bool { return len(s.db.group.writes) == 0 && s.db.group.waiting.Load() == 1 },
		5*time.Second, time.Millisecond, "the writer holds the first write, waiting for its turn")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := startCall(ctx, s, "c_given_up")
	require.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	release()
	require.NoError(t, <-first)
	_, err = s.GetCDR(context.Background(), "c_given_up")
	require.ErrorIs(t, err, ErrNotFound, "a write given up is not made")
	_, err = s.GetCDR(context.Background(), "c_first")
	require.NoError(t, err)

	// A write the writer has gathered, waiting for the turn behind a
	// transaction of the process, is given up all the same when its
	// caller stops waiting, and not made.
	require.Eventually(t, func() bool { return s.db.group.waiting.Load() == 0 }, 5*time.Second, time.Millisecond)
	var once sync.Once
	held := holdWriter(t, s)
	release = func() { once.Do(held) }
	t.Cleanup(release) // before the store closes, should the test fail
	gctx, gcancel := context.WithCancel(context.Background())
	defer gcancel()
	gathered := make(chan error, 1)
	go func() { gathered <- startCall(gctx, s, "c_gathered") }()
	require.Eventually(t, func() bool { return len(s.db.group.writes) == 0 && s.db.group.waiting.Load() == 1 },
		5*time.Second, time.Millisecond, "the writer holds the write, waiting for its turn")
	gcancel()
	select {
	case err := <-gathered:
		require.True(t, errors.Is(err, context.Canceled), "%v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("a write waiting for the turn outlived its caller")
	}
	require.EqualValues(t, 1, s.db.group.waiting.Load(), "the writer still waits for the turn")
	release()
	require.Eventually(t, func() bool { return s.db.group.waiting.Load() == 0 }, 5*time.Second, time.Millisecond)
	_, err = s.GetCDR(context.Background(), "c_gathered")
	require.ErrorIs(t, err, ErrNotFound, "a write given up while waiting for the turn is not made")
}

// TestGroupedWritesAfterClose: a write on a closed store fails, and
// closing waits for the writes already queued.
func TestGroupedWritesAfterClose(t *testing.T) {
	s, err := Open(context.Background(), DriverSQLite, sqliteBackend.newDSN(t))
	require.NoError(t, err)
	seed(t, s)
	require.NoError(t, s.Close())
	require.Error(t, startCall(context.Background(), s, "c_late"))
}

// BenchmarkGroupedWrites measures one call's first write (a CDR insert)
// committed on its own and in transactions of several: the cost of a
// transaction that the group writer shares out.
func BenchmarkGroupedWrites(b *testing.B) {
	for _, size := range []int{1, 4, 16} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			s, _ := openTest(b)
			seed(b, s)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i += size {
				tx, err := s.db.DB.BeginTx(ctx, nil)
				require.NoError(b, err)
				for j := range size {
					_, err := tx.StmtContext(ctx, s.db.prepared[startCDRQuery]).ExecContext(ctx,
						fmt.Sprintf("c_%016x", i+j), "call", "n", "m1", "", "", "17000000001", "", callrec.DirectionToConsignee,
						"alice", "", t0.UnixNano(), nil, nil, "", "", 0, 0)
					require.NoError(b, err)
				}
				require.NoError(b, tx.Commit())
			}
		})
	}
}
