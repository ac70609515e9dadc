package sip

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// cdrBacklog holds the ends of calls whose CDR the store would not take
// (down, restarting, locked, full) and writes them once it answers again,
// so that a store outage loses no call's record. Each is tried again with
// a growing pause, on one goroutine for the whole server, for as long as
// the server runs; Shutdown gives the backlog a last chance (flush). The
// goroutine starts with the first record, so a server whose store never
// failed runs none.
//
// Each end is also put in the spool (Options.Spool) before the call
// forgets it, and marked done there once written: an end still unwritten
// when the process stops, or dies, is written by the node's next start,
// before it closes its open rows as interrupted. Only an end the spool
// could not keep either (no spool, its disk full) is lost with the
// process; its row is then closed as interrupted, at its last refresh.
type cdrBacklog struct {
	write func(ctx context.Context, cdr *CDR) error
	ctx   func(parent context.Context) (context.Context, context.CancelFunc)
	spool Spool // nil: none
	log   *slog.Logger

	mu      sync.Mutex
	pending []pendingEnd
	started bool // the writer goroutine runs (from the first add)
	stopped bool // flush has run
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// pendingEnd is an end waiting in the backlog.
type pendingEnd struct {
	cdr     CDR
	spooled bool // the spool has it
}

// maxCDRBacklog bounds the records held in memory; past it the oldest is
// dropped with an error line (it waits in the spool for the next start,
// or without one its row stays open and is closed as interrupted then).
const maxCDRBacklog = 100_000

// cdrRetryMin and cdrRetryMax bound the pause between tries of the
// backlog.
const (
	cdrRetryMin = 500 * time.Millisecond
	cdrRetryMax = 10 * time.Second
)

func newCDRBacklog(write func(context.Context, *CDR) error,
	storeCtx func(context.Context) (context.Context, context.CancelFunc), spool Spool, log *slog.Logger) *cdrBacklog {
	return &cdrBacklog{write: write, ctx: storeCtx, spool: spool, log: log,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// add queues a record whose end could not be written, once the spool has
// it on disk.
func (b *cdrBacklog) add(cdr CDR) {
	end := pendingEnd{cdr: cdr}
	if b.spool != nil {
		if err := b.spool.Put(cdr); err != nil {
			b.log.Error("cannot spool the CDR end: it is lost if vnum stops before the store answers",
				"call", cdr.ID, "error", err)
		} else {
			end.spooled = true
		}
	}
	b.mu.Lock()
	if len(b.pending) >= maxCDRBacklog {
		oldest := b.pending[0]
		if oldest.spooled {
			b.log.Error("CDR backlog full; the oldest record waits in the spool for the next start", "call", oldest.cdr.ID)
		} else {
			b.log.Error("CDR backlog full; the oldest record is dropped, its row closed as interrupted at the next start",
				"call", oldest.cdr.ID)
		}
		b.pending = b.pending[1:]
	}
	b.pending = append(b.pending, end)
	if !b.started && !b.stopped {
		b.started = true
		go b.run()
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Len is how many records wait to be written.
func (b *cdrBacklog) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

func (b *cdrBacklog) run() {
	defer close(b.done)
	pause := cdrRetryMin
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-b.wake:
		case <-timer.C:
		}
		if b.writeAll() {
			pause = cdrRetryMin
			continue
		}
		timer.Reset(pause)
		pause = min(2*pause, cdrRetryMax)
	}
}

// writeAll writes the pending records in order until one fails, and
// reports whether none is left.
func (b *cdrBacklog) writeAll() bool {
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.mu.Unlock()
			return true
		}
		end := b.pending[0]
		b.mu.Unlock()
		cdr := end.cdr
		ctx, cancel := b.ctx(context.Background())
		err := b.write(ctx, &cdr)
		cancel()
		if err != nil {
			b.log.Debug("CDR backlog: store not back yet", "waiting", b.Len(), "error", err)
			return false
		}
		if end.spooled {
			if err := b.spool.Done(cdr.ID); err != nil {
				// The next start writes it again, which changes nothing.
				b.log.Warn("CDR written, but not marked done in the spool", "call", cdr.ID, "error", err)
			}
		}
		b.mu.Lock()
		b.pending = b.pending[1:]
		left := len(b.pending)
		b.mu.Unlock()
		b.log.Info("CDR written from the backlog", "call", cdr.ID, "waiting", left)
	}
}

// flush stops the backlog after one last try of every record, for at most
// until ctx ends.
func (b *cdrBacklog) flush(ctx context.Context) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	b.stopped = true
	started := b.started
	b.mu.Unlock()
	if started {
		close(b.stop)
		<-b.done
	}
	if b.Len() > 0 {
		flushed := make(chan struct{})
		go func() {
			defer close(flushed)
			b.writeAll()
		}()
		select {
		case <-flushed:
		case <-ctx.Done():
		}
	}
	b.reportLeft()
}

// reportLeft says in one line what the backlog could not write before the
// process stops: how many ends the spool keeps for the next start, and
// how many are lost (their rows closed as interrupted at the next start).
func (b *cdrBacklog) reportLeft() {
	b.mu.Lock()
	n, spooled := len(b.pending), 0
	for _, e := range b.pending {
		if e.spooled {
			spooled++
		}
	}
	b.mu.Unlock()
	switch {
	case n == 0:
	case spooled == n:
		b.log.Error("CDR ends not written at shutdown: spooled, the next start writes them",
			"count", n, "spooled", spooled, "spool", b.spool.Path())
	case spooled > 0:
		b.log.Error("CDR ends not written at shutdown: the spooled ones the next start writes, the others it closes as interrupted",
			"count", n, "spooled", spooled, "lost", n-spooled, "spool", b.spool.Path())
	default:
		b.log.Error("CDR ends not written at shutdown and not spooled: the next start closes them as interrupted",
			"count", n, "spooled", 0, "lost", n)
	}
}
