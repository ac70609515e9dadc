// Package events delivers the call events the store keeps in its outbox
// (README "Call events") to the merchants' webhooks: workers claim the
// events that are due, post each as signed JSON (Vnum-Signature), and note
// how it went, trying again on the events.retries schedule until the event
// is delivered or failed. A call's events go in order, one at a time. On
// PostgreSQL every node runs workers and no event is sent by two at once
// (the store's claims); on SQLite one process does. Nothing on a call's
// path waits for them: the call only writes the outbox row.
//
// The dispatcher also sweeps for bindings whose end has passed
// (binding.ended) and purges delivered events after a week.
package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/config"
)

// Defaults of Options.
const (
	// DefaultWorkers is how many deliveries one node makes at once. A
	// call's events go one at a time, so this bounds how many calls'
	// events move at once: at 200 calls/s of four events each, a receiver
	// that takes 200 ms needs 160 to keep up. A worker waiting on a
	// receiver costs a goroutine and a connection.
	DefaultWorkers = 256
	// DefaultPoll is how often the outbox is looked at for events that
	// are due: new ones of any node, and retries whose wait is over.
	DefaultPoll = 250 * time.Millisecond
	// DefaultSweep is how often ended bindings are looked for, and old
	// delivered events purged.
	DefaultSweep = 30 * time.Second
	// DefaultKeep is how long a delivered event is kept before the purge.
	DefaultKeep = 7 * 24 * time.Hour
)

// claimGather is how long the claiming loop waits after a worker
// finished before it claims again, so that workers finishing together are
// given their next events by one store transaction, not one each.
const claimGather = 5 * time.Millisecond

// claimMargin is how much longer than events.timeout a claim holds an
// event: the attempt and the note of its outcome fit well inside, so no
// other node sends the event while this one still may.
const claimMargin = time.Minute

// storeTimeout bounds each of the dispatcher's own store operations.
const storeTimeout = 10 * time.Second

// maxResponse is how much of a receiver's answer is read (and thrown
// away), so that its connection can be used again.
const maxResponse = 64 << 10

// The outcomes of a delivery attempt, the outcome label of
// vnum_events_total.
const (
	// OutcomeDelivered is an attempt a receiver answered with a 2xx.
	OutcomeDelivered = "delivered"
	// OutcomeRetried is a failed attempt that will be tried again.
	OutcomeRetried = "retried"
	// OutcomeFailed is the last attempt of the schedule, failed: the
	// event is failed, kept until retried by hand.
	OutcomeFailed = "failed"
)

// Options configures a Dispatcher.
type Options struct {
	// Store is the outbox.
	Store *binding.Store
	// Config is the events section; Reload changes it.
	Config config.Events
	// Now is the clock of signatures, retry times and claims; nil means
	// time.Now.
	Now func() time.Time
	// Log receives one line per failed attempt; nil discards.
	Log *slog.Logger
	// Lookup resolves webhook hosts; nil uses the system's resolver.
	// Tests give one of their own instead of DNS.
	Lookup Lookup
	// Workers, Poll, Sweep and Keep default to DefaultWorkers,
	// DefaultPoll, DefaultSweep and DefaultKeep when zero.
	Workers int
	Poll    time.Duration
	Sweep   time.Duration
	Keep    time.Duration
	// UserAgent is sent with each delivery; "" means "vnum".
	UserAgent string
}

// Dispatcher runs the delivery workers of one node.
type Dispatcher struct {
	store     *binding.Store
	cfg       atomic.Pointer[config.Events]
	now       func() time.Time
	log       *slog.Logger
	lookup    Lookup
	transport *http.Transport
	client    *http.Client
	workers   int
	poll      time.Duration
	sweep     time.Duration
	keep      time.Duration
	userAgent string

	wake     chan struct{}
	stopLoop context.CancelFunc
	loopDone chan struct{}
	// notes carries the attempts' outcomes to noteLoop, which writes
	// those that come together in one store transaction.
	notes     chan note
	notesDone chan struct{}
	// sends is the context of attempts in flight: Stop cancels it only
	// when its own deadline passes.
	sends      context.Context
	stopSends  context.CancelFunc
	inflight   sync.WaitGroup
	mu         sync.Mutex
	counts     map[[2]string]int64
	lastClaimE time.Time // when a failed claim was last logged
}

// Start starts the workers and the sweep; Stop ends them.
func Start(o Options) *Dispatcher {
	d := &Dispatcher{store: o.Store, now: o.Now, log: o.Log, lookup: o.Lookup, workers: o.Workers, poll: o.Poll,
		sweep: o.Sweep, keep: o.Keep, userAgent: o.UserAgent, wake: make(chan struct{}, 1), loopDone: make(chan struct{}),
		notesDone: make(chan struct{}), counts: map[[2]string]int64{}}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.lookup == nil {
		d.lookup = defaultLookup
	}
	if d.workers <= 0 {
		d.workers = DefaultWorkers
	}
	if d.poll <= 0 {
		d.poll = DefaultPoll
	}
	if d.sweep <= 0 {
		d.sweep = DefaultSweep
	}
	if d.keep <= 0 {
		d.keep = DefaultKeep
	}
	if d.userAgent == "" {
		d.userAgent = "vnum"
	}
	cfg := o.Config
	d.cfg.Store(&cfg)
	d.transport = &http.Transport{
		// A proxy would be the address dialled, not the webhook's: the
		// guard must see the real one.
		Proxy: nil,
		DialContext: guardedDial(&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
			d.lookup, func() bool { return d.cfg.Load().AllowPrivate }),
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    d.workers,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: maxResponse,
	}
	d.client = &http.Client{Transport: d.transport,
		// A redirect is not a 2xx: it is not followed (it could point
		// anywhere) and the attempt fails.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var loop context.Context
	loop, d.stopLoop = context.WithCancel(context.Background())
	d.sends, d.stopSends = context.WithCancel(context.Background())
	d.notes = make(chan note, d.workers)
	go d.noteLoop()
	go d.run(loop)
	return d
}

// Reload takes a new events section: the timeout and schedule apply to the
// next attempts, allow_private at once (kept-alive connections are closed,
// so that none outlives a change of rule).
func (d *Dispatcher) Reload(c config.Events) {
	d.cfg.Store(&c)
	d.transport.CloseIdleConnections()
}

// Wake makes the workers look at the outbox now rather than at the next
// poll.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Stop stops claiming and waits for the attempts in flight until ctx ends,
// then cuts them: an attempt cut short counts as failed and its event is
// tried again on the schedule, by this node's next start or another node.
func (d *Dispatcher) Stop(ctx context.Context) {
	d.stopLoop()
	<-d.loopDone
	done := make(chan struct{})
	go func() {
		d.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		d.stopSends()
		<-done
	}
	d.stopSends()
	close(d.notes)
	<-d.notesDone
	d.transport.CloseIdleConnections()
}

// CheckURL checks a webhook URL against the current events.allow_private
// and the dispatcher's resolver (CheckURL), for registration.
func (d *Dispatcher) CheckURL(ctx context.Context, rawURL string) error {
	return CheckURL(ctx, rawURL, d.cfg.Load().AllowPrivate, d.lookup)
}

// Counts returns the attempts made since the start by (type, outcome).
func (d *Dispatcher) Counts() map[[2]string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[[2]string]int64, len(d.counts))
	for k, v := range d.counts {
		out[k] = v
	}
	return out
}

// Pending returns how many events wait to be delivered, on every node.
func (d *Dispatcher) Pending(ctx context.Context) (int, error) { return d.store.PendingEvents(ctx) }

// run claims what is due, as many as there are free workers, and hands
// each to a worker of its own; then waits for a poll, a wake-up or a
// worker that finished (whose call may have its next event due).
func (d *Dispatcher) run(ctx context.Context) {
	defer close(d.loopDone)
	busy := make(chan struct{}, d.workers)
	var sweepAt time.Time
	for ctx.Err() == nil {
		if now := time.Now(); !now.Before(sweepAt) {
			d.sweepOnce(ctx)
			sweepAt = now.Add(d.sweep)
		}
		if free := d.workers - len(busy); free > 0 {
			n, err := d.claim(ctx, free, busy)
			if err == nil && n == free {
				continue // more may be due
			}
		}
		timer := time.NewTimer(d.poll)
		select {
		case <-ctx.Done():
		case <-d.wake:
			timer.Reset(claimGather)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		case <-timer.C:
		}
		timer.Stop()
	}
}

// claim claims up to n events and starts their attempts.
func (d *Dispatcher) claim(ctx context.Context, n int, busy chan struct{}) (int, error) {
	cfg := d.cfg.Load()
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	ds, err := d.store.ClaimEvents(sctx, d.now(), n, cfg.Timeout+claimMargin)
	cancel()
	if err != nil {
		if ctx.Err() == nil && time.Since(d.lastClaimE) > time.Minute {
			d.lastClaimE = time.Now()
			d.log.Warn("events: cannot claim events from the store; trying again", "error", err)
		}
		return 0, err
	}
	for _, dl := range ds {
		busy <- struct{}{}
		d.inflight.Add(1)
		go func() {
			defer d.inflight.Done()
			d.deliver(dl)
			<-busy
			d.Wake()
		}()
	}
	return len(ds), nil
}

// deliver makes one attempt and notes its outcome: delivered, tried again
// after the schedule's next wait, or failed after its last.
func (d *Dispatcher) deliver(dl binding.Delivery) {
	cfg := d.cfg.Load()
	why := d.send(cfg, dl)
	now := d.now()
	log := d.log.With("event", dl.ID, "type", dl.Type, "merchant", dl.Merchant, "attempt", dl.Attempts)
	o := binding.Outcome{Delivery: dl, At: now, Delivered: why == "", Why: why}
	var outcome string
	switch {
	case why == "":
		outcome = OutcomeDelivered
		log.Debug("event delivered")
	case dl.Attempts <= len(cfg.Retries):
		wait := cfg.Retries[max(dl.Attempts-1, 0)]
		outcome, o.Next = OutcomeRetried, now.Add(wait)
		log.Warn("event not delivered; trying again", "error", why, "in", wait.String())
	default:
		outcome = OutcomeFailed
		log.Warn("event failed: every attempt of events.retries failed; it is kept until retried by hand "+
			"(vnum event retry)", "error", why)
	}
	n := note{outcome: o, done: make(chan error, 1)}
	d.notes <- n
	err := <-n.done
	switch {
	case errors.Is(err, binding.ErrClaimLost):
		log.Warn("event: its claim ran out before the outcome was noted; another attempt's outcome stands")
	case err != nil:
		log.Error("event: cannot note the outcome; the event is sent again once its claim runs out", "error", err)
	}
	d.mu.Lock()
	d.counts[[2]string{dl.Type, outcome}]++
	d.mu.Unlock()
}

// note is one attempt's outcome on its way to the store; done gets how
// noting it went.
type note struct {
	outcome binding.Outcome
	done    chan error
}

// maxNoteBatch bounds the outcomes one transaction notes: on SQLite the
// calls' own writes wait while it holds the store's one writer.
const maxNoteBatch = 64

// noteLoop writes the outcomes the workers hand it: those waiting when it
// is free go in one store transaction (group commit), so that many
// deliveries finishing together cost the store, and the calls writing to
// it, one write rather than one each. It ends when Stop closes notes.
func (d *Dispatcher) noteLoop() {
	defer close(d.notesDone)
	for first := range d.notes {
		batch := []note{first}
	gather:
		for len(batch) < maxNoteBatch {
			select {
			case n, ok := <-d.notes:
				if !ok {
					break gather
				}
				batch = append(batch, n)
			default:
				break gather
			}
		}
		outs := make([]binding.Outcome, len(batch))
		for i, n := range batch {
			outs[i] = n.outcome
		}
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		errs := d.store.NoteOutcomes(ctx, outs)
		cancel()
		for i, n := range batch {
			n.done <- errs[i]
		}
	}
}

// send posts dl's body, signed, and returns why it was not delivered, or
// "" when the receiver answered 2xx within events.timeout.
func (d *Dispatcher) send(cfg *config.Events, dl binding.Delivery) string {
	if dl.URL == "" {
		return "the merchant has no webhook"
	}
	body, err := dl.Body()
	if err != nil {
		return "event body: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(d.sends, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.URL, bytes.NewReader(body))
	if err != nil {
		return "webhook url: " + err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.userAgent)
	req.Header.Set(SignatureHeader, Sign(dl.Secret, d.now(), body))
	res, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Sprintf("no answer within events.timeout (%s)", config.FormatDuration(cfg.Timeout))
		}
		return err.Error()
	}
	_, cerr := io.Copy(io.Discard, io.LimitReader(res.Body, maxResponse))
	if err := errors.Join(cerr, res.Body.Close()); err != nil {
		d.log.Debug("events: reading a receiver's answer", "event", dl.ID, "error", err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return "HTTP " + res.Status
	}
	return ""
}

// sweepOnce reports the bindings whose end passed (binding.ended) and
// purges the events delivered longer than keep ago.
func (d *Dispatcher) sweepOnce(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	now := d.now()
	if n, err := d.store.ReportEndedBindings(sctx, now); err != nil {
		if ctx.Err() == nil {
			d.log.Warn("events: sweeping ended bindings", "error", err)
		}
	} else if n > 0 {
		d.log.Debug("events: bindings ended", "count", n)
	}
	if _, err := d.store.PurgeDelivered(sctx, now.Add(-d.keep)); err != nil && ctx.Err() == nil {
		d.log.Warn("events: purging delivered events", "error", err)
	}
}
