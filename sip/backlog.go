package sip

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// cdrBacklog holds the ends of calls whose CDR the store would not take
// (down, restarting, locked) and writes them once it answers again, so that
// a store outage loses no call's record. Each is tried again with a
// growing pause, on one goroutine for the whole server, for as long as the
// server runs; Shutdown gives the backlog a last chance (flush). The
// goroutine starts with the first record, so a server whose store never
// failed runs none. A record
// still unwritten then is closed as interrupted, at its last refresh, by
// the node's next start.
type cdrBacklog struct {
	write func(ctx context.Context, cdr *CDR) error
	ctx   func(parent context.Context) (context.Context, context.CancelFunc)
	log   *slog.Logger

	mu      sync.Mutex
	pending []CDR
	started bool // the writer goroutine runs (from the first add)
	stopped bool // flush has run
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// maxCDRBacklog bounds the records held in memory; past it the oldest is
// dropped with an error line (its row stays open and is closed as
// interrupted at the next start).
const maxCDRBacklog = 100_000

// cdrRetryMin and cdrRetryMax bound the pause between tries of the
// backlog.
const (
	cdrRetryMin = 500 * time.Millisecond
	cdrRetryMax = 10 * time.Second
)

func newCDRBacklog(write func(context.Context, *CDR) error,
	storeCtx func(context.Context) (context.Context, context.CancelFunc), log *slog.Logger) *cdrBacklog {
	return &cdrBacklog{write: write, ctx: storeCtx, log: log,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// add queues a record whose end could not be written.
func (b *cdrBacklog) add(cdr CDR) {
	b.mu.Lock()
	if len(b.pending) >= maxCDRBacklog {
		b.log.Error("CDR backlog full; the oldest record waits for the next start", "call", b.pending[0].ID)
		b.pending = b.pending[1:]
	}
	b.pending = append(b.pending, cdr)
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
		cdr := b.pending[0]
		b.mu.Unlock()
		ctx, cancel := b.ctx(context.Background())
		err := b.write(ctx, &cdr)
		cancel()
		if err != nil {
			b.log.Debug("CDR backlog: store not back yet", "waiting", b.Len(), "error", err)
			return false
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
	if n := b.Len(); n > 0 {
		b.log.Error("CDRs not written at shutdown; the next start closes them as interrupted", "count", n)
	}
}
