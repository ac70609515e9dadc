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

// roundGap is the shortest time between two of the loop's rounds (one
// store transaction each that notes the attempts ended since the last and
// claims the events due): attempts ending within it are noted together,
// and the next events of their calls claimed in the same transaction.
// Under load the workers thus cost the store at most 1/roundGap write
// transactions a second however many events move (they made one or two
// per event delivered when each attempt's outcome and each claim was a
// transaction of its own), and on SQLite every call's write waits while
// one holds the database's one writer. A call's next event leaves at
// most roundGap (and a transaction) after the one before it was answered.
const roundGap = 25 * time.Millisecond

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
	// notes carries the attempts' outcomes to the loop, which notes
	// those that came since its last round in one store transaction. It
	// holds as many as there are workers: a worker never waits to hand
	// its outcome over.
	notes chan binding.Outcome
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
		counts: map[[2]string]int64{}}
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
	d.notes = make(chan binding.Outcome, d.workers)
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
// The outcomes of the attempts are noted before it returns.
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
	var outs []binding.Outcome
	for o := range d.notes {
		outs = append(outs, o)
	}
	d.noteAll(outs)
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

// maxBatch bounds the outcomes one round notes and the events it claims:
// on SQLite the calls' own writes wait while its transaction holds the
// store's one writer. Outcomes beyond it wait for the next round.
const maxBatch = 64

// run makes the rounds: each notes the outcomes of the attempts that ended
// since the last and claims the events due, as many as there are free
// workers (at most maxBatch), in one store transaction, and hands each
// event to a worker of its own. A round with nothing to note first looks
// whether anything is due, which only reads: an idle node does not write.
// Between rounds it waits for an attempt to end, a wake-up or the poll,
// and then at least until roundGap has passed since the last round. When
// it stops, it notes the outcomes it holds; Stop notes those of the
// attempts still in flight.
func (d *Dispatcher) run(ctx context.Context) {
	defer close(d.loopDone)
	var (
		outs     []binding.Outcome // attempts ended, not noted yet
		inflight int
		sweepAt  time.Time
		last     time.Time // when the last round began
	)
	take := func(o binding.Outcome) {
		outs = append(outs, o)
		inflight--
	}
	for ctx.Err() == nil {
		if now := time.Now(); !now.Before(sweepAt) {
			d.sweepOnce(ctx)
			sweepAt = now.Add(d.sweep)
		}
	gather:
		for {
			select {
			case o := <-d.notes:
				take(o)
			default:
				break gather
			}
		}
		last = time.Now()
		free := min(d.workers-inflight, maxBatch)
		more := d.round(ctx, &outs, free, &inflight)
		// Wait for something to do: an attempt that ended, a wake-up
		// (Wake), the poll; then for the rest of roundGap, gathering
		// what ends meanwhile. With more to do (outcomes left over,
		// every free worker given an event) only the gap is waited.
		if !more {
			timer := time.NewTimer(d.poll)
			select {
			case <-ctx.Done():
			case o := <-d.notes:
				take(o)
			case <-d.wake:
			case <-timer.C:
			}
			timer.Stop()
		}
		if gap := roundGap - time.Since(last); gap > 0 && ctx.Err() == nil {
			timer := time.NewTimer(gap)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
			timer.Stop()
		}
	}
	d.noteAll(outs)
}

// round notes up to maxBatch of outs (and drops them from outs) and claims
// up to free events, whose attempts it starts, counting them in inflight.
// It reports whether more is waiting: outcomes left over, or as many
// events claimed as asked for.
func (d *Dispatcher) round(ctx context.Context, outs *[]binding.Outcome, free int, inflight *int) bool {
	batch := (*outs)[:min(len(*outs), maxBatch)]
	now := d.now()
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if len(batch) == 0 {
		if free <= 0 {
			return false
		}
		due, err := d.store.EventsDue(sctx, now)
		if err != nil {
			d.claimFailed(ctx, err)
			return false
		}
		if !due {
			return false
		}
	}
	cfg := d.cfg.Load()
	errs, ds, err := d.store.NoteAndClaim(sctx, batch, now, free, cfg.Timeout+claimMargin)
	if err != nil {
		// Nothing was noted: the outcomes are tried again next round.
		d.claimFailed(ctx, err)
		return false
	}
	d.logNotes(batch, errs)
	*outs = (*outs)[len(batch):]
	for _, dl := range ds {
		*inflight++
		d.inflight.Add(1)
		go func() {
			defer d.inflight.Done()
			d.notes <- d.deliver(dl)
		}()
	}
	return len(*outs) > 0 || (free > 0 && len(ds) == free)
}

// claimFailed logs, at most once a minute, that the store did not take a
// round's transaction; the next round tries again.
func (d *Dispatcher) claimFailed(ctx context.Context, err error) {
	if ctx.Err() == nil && time.Since(d.lastClaimE) > time.Minute {
		d.lastClaimE = time.Now()
		d.log.Warn("events: cannot note outcomes and claim events in the store; trying again", "error", err)
	}
}

// noteAll notes outs in batches of maxBatch, when the loop has stopped.
func (d *Dispatcher) noteAll(outs []binding.Outcome) {
	for len(outs) > 0 {
		batch := outs[:min(len(outs), maxBatch)]
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		errs := d.store.NoteOutcomes(ctx, batch)
		cancel()
		d.logNotes(batch, errs)
		outs = outs[len(batch):]
	}
}

// logNotes logs the outcomes that could not be noted.
func (d *Dispatcher) logNotes(outs []binding.Outcome, errs []error) {
	for i, err := range errs {
		dl := outs[i].Delivery
		switch {
		case err == nil:
		case errors.Is(err, binding.ErrClaimLost):
			d.log.Warn("event: its claim ran out before the outcome was noted; another attempt's outcome stands",
				"event", dl.ID, "type", dl.Type, "merchant", dl.Merchant, "attempt", dl.Attempts)
		default:
			d.log.Error("event: cannot note the outcome; the event is sent again once its claim runs out",
				"event", dl.ID, "type", dl.Type, "merchant", dl.Merchant, "attempt", dl.Attempts, "error", err)
		}
	}
}

// deliver makes one attempt and returns its outcome, for the loop to
// note: delivered, tried again after the schedule's next wait, or failed
// after its last.
func (d *Dispatcher) deliver(dl binding.Delivery) binding.Outcome {
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
	d.mu.Lock()
	d.counts[[2]string{dl.Type, outcome}]++
	d.mu.Unlock()
	return o
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
