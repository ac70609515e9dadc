package binding

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit of SQLite's single writes. A statement committed on its own
// costs SQLite a transaction: some 130 µs of the 160 µs of one CDR insert
// on this project's reference machine, against 20 µs for each more
// statement in the same transaction (BenchmarkGroupedWrites). Every call
// writes its record three times, so under load the writes of many calls
// queue for the one writer anyway (lockWrite). The writes that
// db.ExecContext runs outside a transaction are handed to one goroutine,
// which runs those that are waiting together in one transaction, each
// caller still waiting until its own statement is committed: nothing is
// acknowledged before it is on disk as before, and each statement keeps
// its own result. Statements of independent callers only become visible
// together; a caller's next write goes after its last one's commit.

const (
	// groupMax is how many statements one transaction holds at most.
	groupMax = 64
	// groupLinger is how long the writer waits for more statements
	// before it writes a group, while writes meet: when the group before
	// held more than one. A lone writer (a bulk import, an idle node's
	// calls) is never kept waiting: its statements go at once.
	groupLinger = 2 * time.Millisecond
)

// groupWrite is one statement waiting for the group writer.
type groupWrite struct {
	ctx   context.Context
	query string
	args  []any
	// state is groupQueued until the writer takes the statement
	// (groupTaken) or its caller gives up waiting (groupAbandoned).
	state atomic.Int32
	res   sql.Result
	err   error
	done  chan struct{}
}

const (
	groupQueued int32 = iota
	groupTaken
	groupAbandoned
)

// groupWriter runs the store's single writes in groups (see above).
type groupWriter struct {
	d      *db
	writes chan *groupWrite
	done   chan struct{}

	// mu is held shared while a statement is handed over, and whole by
	// close, so that nothing is sent on the closed channel.
	mu     sync.RWMutex
	closed bool

	// grouped counts the statements committed in groups of more than
	// one, and waiting those gathered that wait for SQLite's write turn,
	// for the tests.
	grouped, waiting atomic.Int64
}

func newGroupWriter(d *db) *groupWriter {
	g := &groupWriter{d: d, writes: make(chan *groupWrite, groupMax), done: make(chan struct{})}
	go g.run()
	return g
}

// exec runs query with args in the next group and returns its result. A
// caller whose ctx ends before the writer took its statement gets ctx's
// error and the statement is not run; once taken, it waits for the
// outcome, so an error always means the statement was not committed.
func (g *groupWriter) exec(ctx context.Context, query string, args []any) (sql.Result, error) {
	w := &groupWrite{ctx: ctx, query: query, args: args, done: make(chan struct{})}
	if err := g.hand(ctx, w); err != nil {
		return nil, err
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		if w.state.CompareAndSwap(groupQueued, groupAbandoned) {
			return nil, ctx.Err()
		}
		<-w.done
	}
	return w.res, w.err
}

// hand queues w for the writer.
func (g *groupWriter) hand(ctx context.Context, w *groupWrite) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return sql.ErrConnDone
	}
	select {
	case g.writes <- w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close ends the writer once the statements queued are written; later
// writes fail with sql.ErrConnDone.
func (g *groupWriter) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.writes)
	}
	g.mu.Unlock()
	<-g.done
}

// run gathers the statements waiting into groups and writes each group,
// until the channel is closed and drained.
func (g *groupWriter) run() {
	defer close(g.done)
	group := make([]*groupWrite, 0, groupMax)
	linger := time.NewTimer(groupLinger)
	linger.Stop()
	meeting := false
	for first := range g.writes {
		group = append(group[:0], first)
		if meeting {
			linger.Reset(groupLinger)
		}
		group = g.gather(group, meeting, linger.C)
		linger.Stop()
		meeting = len(group) > 1
		g.write(group)
		clear(group)
	}
}

// gather adds to group the statements waiting, and with wait those that
// come until linger fires, up to groupMax.
func (g *groupWriter) gather(group []*groupWrite, wait bool, linger <-chan time.Time) []*groupWrite {
	for len(group) < groupMax {
		var w *groupWrite
		ok := false
		if wait {
			select {
			case w, ok = <-g.writes:
			case <-linger:
			}
		} else {
			select {
			case w, ok = <-g.writes:
			default:
			}
		}
		if !ok {
			break
		}
		group = append(group, w)
	}
	return group
}

// write takes the statements of group whose callers still wait, runs
// them and tells each caller its outcome.
func (g *groupWriter) write(group []*groupWrite) {
	// The turn first: while the writer waits for it (a transaction of
	// this process writes), the statements are not taken yet and their
	// callers may still give up at their deadline.
	g.waiting.Add(int64(len(group)))
	unlock, _ := g.d.lockWrite(context.Background())
	g.waiting.Add(-int64(len(group)))
	defer unlock()
	taken := group[:0]
	for _, w := range group {
		if w.state.CompareAndSwap(groupQueued, groupTaken) {
			taken = append(taken, w)
		}
	}
	if len(taken) == 0 {
		return
	}
	if len(taken) > 1 && g.inOne(taken) {
		g.grouped.Add(int64(len(taken)))
	} else {
		// Each on its own, as a single write always was: one statement,
		// or a group that failed and was rolled back whole.
		for _, w := range taken {
			w.res, w.err = g.d.execNow(w.ctx, w.query, w.args)
		}
	}
	for _, w := range taken {
		close(w.done)
	}
}

// inOne runs the statements of group in one transaction and reports
// whether it committed. On any error it rolls back and returns false,
// having set no outcome: the caller then runs each statement on its own,
// so that every caller gets its own statement's error, and no statement
// runs after SQLite may have ended the transaction by itself (it does on
// some errors, and a later statement would then commit alone). The
// statements run without their callers' contexts: a context that ends
// interrupts SQLite, which rolls back the whole transaction.
func (g *groupWriter) inOne(group []*groupWrite) bool {
	ctx := context.Background()
	tx, err := g.d.DB.BeginTx(ctx, nil)
	if err != nil {
		return false
	}
	for _, w := range group {
		var err error
		if st := g.d.prepared[w.query]; st != nil {
			w.res, err = tx.StmtContext(ctx, st).ExecContext(ctx, w.args...)
		} else {
			w.res, err = tx.ExecContext(ctx, g.d.dialect.rebind(w.query), w.args...)
		}
		if err != nil {
			_ = tx.Rollback()
			return false
		}
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		return false
	}
	return true
}
