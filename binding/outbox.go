package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vnum/vnum/callrec"
)

// The outbox's side for the delivery workers (package events): claiming
// the events due, noting how each attempt went, the sweep that reports the
// bindings whose end passed, and the purge of old delivered events.

// ErrClaimLost reports that an event's claim ran out and another worker
// took it (or its webhook was removed) before the attempt's outcome was
// noted: that worker's outcome is the one kept.
var ErrClaimLost = errors.New("event claim lost")

// skipLocked is forUpdate that passes over rows another transaction holds
// (PostgreSQL), so that several nodes taking work from one table never
// wait for each other nor take the same rows.
func (d dialect) skipLocked() string {
	if d == postgresDialect {
		return ` FOR UPDATE SKIP LOCKED`
	}
	return ``
}

// Delivery is an event claimed for one delivery attempt, with where it
// goes.
type Delivery struct {
	Event
	// URL and Secret are the merchant's webhook; URL is "" when the
	// merchant has none any more.
	URL, Secret string
	// Claim names this attempt; the outcome is noted only while the event
	// still carries it.
	Claim string
}

// The outbox's statements, prepared once per store (outboxQueries): the
// delivery workers run them for every batch of events, inside the write
// transaction that every other writer waits for on SQLite, where
// preparing them each time would hold it longer.
const (
	// claimedQuery reads the events a claim took, with their webhooks.
	claimedQuery = `SELECT ` + eventCols + `, COALESCE(w.url, ''), COALESCE(w.secret, '')
		FROM events e LEFT JOIN webhooks w ON w.merchant = e.merchant WHERE e.claim = ? ORDER BY e.seq`
	// noteRetryQuery notes a failed attempt: tried again at next_at, or
	// failed.
	noteRetryQuery = `UPDATE events SET status = ?, next_at = ?, claim = NULL, claimed_until = 0,
		last_error = ? WHERE id = ? AND claim = ?`
	// noteDeliveredQuery notes a delivery.
	noteDeliveredQuery = `UPDATE events SET status = 'delivered', delivered_at = ?, claim = NULL,
		claimed_until = 0, last_error = '' WHERE id = ? AND claim = ?`
	// nextDueQuery makes the next event of a call due once the one
	// before it is delivered (unless it is failed).
	nextDueQuery = `UPDATE events SET next_at = ?
		WHERE call_id = ? AND status = 'pending' AND sequence = (SELECT MIN(sequence) FROM events
			WHERE call_id = ? AND sequence > ? AND status <> 'delivered')`
	// dueQuery finds whether any event may be claimed (EventsDue).
	dueQuery = `SELECT 1 FROM events WHERE status = 'pending' AND next_at <= ? AND claimed_until <= ? LIMIT 1`
)

// claimQuery is the statement that claims the events due, those due the
// longest first, in d's form: on PostgreSQL it passes over the rows
// another node holds. It takes them in the order of the index of due
// events (events_due: next_at, then the row), so that it reads only as
// far as the events it claims; ordered by the row alone, it read and
// sorted every due event first, however many thousand waited.
func claimQuery(d dialect) string {
	return `UPDATE events SET claim = ?, claimed_until = ?, attempts = attempts + 1
		WHERE seq IN (SELECT e.seq FROM events e
			WHERE e.status = 'pending' AND e.next_at <= ? AND e.claimed_until <= ?
			AND NOT EXISTS (SELECT 1 FROM events p
				WHERE p.call_id = e.call_id AND p.sequence < e.sequence AND p.status <> 'delivered')
			ORDER BY e.next_at, e.seq LIMIT ?` + d.skipLocked() + `)`
}

// outboxQueries are the outbox's statements Open prepares for d.
func outboxQueries(d dialect) []string {
	q := []string{claimQuery(d), claimedQuery, noteRetryQuery, noteDeliveredQuery, nextDueQuery, dueQuery}
	if d == postgresDialect {
		q = append(q, lockCallQuery)
	}
	return q
}

// EventsDue reports whether an event may be due at now: one pending,
// whose time has come and that no worker holds. It only reads, so that
// workers with nothing to do never take SQLite's one writer to find out;
// an event it finds may still not be claimable (it waits behind an
// earlier event of its call that a retry by hand made pending).
func (s *Store) EventsDue(ctx context.Context, now time.Time) (bool, error) {
	var one int
	t := now.UnixNano()
	err := s.db.QueryRowContext(ctx, dueQuery, t, t).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("events due: %w", err)
	}
	return true, nil
}

// ClaimEvents claims up to n events that are due at now (those due the
// longest first) for one delivery attempt each, held for hold: no other worker, on any node, takes them
// until the attempt's outcome is noted or hold has passed (a worker that
// died). Each counts as an attempt. An event whose call has an earlier
// event not yet delivered is not taken: a call's events go in order, so a
// batch holds at most one event of any call. The events come with their
// data as receivers get it.
func (s *Store) ClaimEvents(ctx context.Context, now time.Time, n int, hold time.Duration) ([]Delivery, error) {
	_, ds, err := s.NoteAndClaim(ctx, nil, now, n, hold)
	return ds, err
}

// Outcome is how one delivery attempt went, for NoteOutcomes.
type Outcome struct {
	// Delivery is the attempt's claimed event.
	Delivery Delivery
	// At is when the attempt ended: a delivered event's delivered_at, and
	// when the next event of its call becomes due.
	At time.Time
	// Delivered is true when the receiver took the event.
	Delivered bool
	// Why says why an attempt failed; Next is when it is tried again, or
	// zero when the event is failed, kept until retried by hand.
	Why  string
	Next time.Time
}

// EventDelivered notes that d's receiver took it at now (NoteOutcomes).
func (s *Store) EventDelivered(ctx context.Context, d Delivery, now time.Time) error {
	return s.NoteOutcomes(ctx, []Outcome{{Delivery: d, At: now, Delivered: true}})[0]
}

// EventAttemptFailed notes that d's attempt failed with why: it is tried
// again at next, or when next is zero it is failed (NoteOutcomes).
func (s *Store) EventAttemptFailed(ctx context.Context, d Delivery, why string, next time.Time) error {
	return s.NoteOutcomes(ctx, []Outcome{{Delivery: d, Why: why, Next: next}})[0]
}

// NoteOutcomes notes the outcomes of delivery attempts in one transaction,
// so that workers finishing together cost the store one write, and
// returns one error for each: nil, ErrClaimLost when that attempt's claim
// is no longer its event's (it ran out and another worker took the event,
// or the webhook was removed: the other outcome stands), or the
// transaction's error for all of them (their events are sent again once
// their claims run out).
//
// A delivered event makes the next event of its call due at once (unless
// that one is failed). A failed attempt's event is tried again at Next,
// or is failed; the later events of its call wait for it either way.
func (s *Store) NoteOutcomes(ctx context.Context, outs []Outcome) []error {
	errs, _, _ := s.NoteAndClaim(ctx, outs, time.Time{}, 0, 0)
	return errs
}

// NoteAndClaim notes outs as NoteOutcomes does, then claims up to n events
// due at now as ClaimEvents does, in one transaction: the delivery
// workers' one write for each batch of attempts, which makes the next
// event of each call delivered due and claims it at once. It returns one
// error for each outcome, the claimed events, and the transaction's error
// (then also each outcome's). With no outcome and n <= 0 it writes
// nothing.
func (s *Store) NoteAndClaim(ctx context.Context, outs []Outcome, now time.Time, n int, hold time.Duration) (
	[]error, []Delivery, error) {
	errs := make([]error, len(outs))
	if len(outs) == 0 && n <= 0 {
		return errs, nil, nil
	}
	claim := ""
	if n > 0 {
		var err error
		if claim, err = newID("cl_"); err != nil {
			return errs, nil, err
		}
	}
	// The calls' CDR rows are locked (PostgreSQL) in one order, so that
	// two nodes noting outcomes of the same calls never wait on each other
	// in a circle.
	order := make([]int, len(outs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(outs[a].Delivery.CallID, outs[b].Delivery.CallID) })
	var out []Delivery
	err := s.tx(ctx, func(tx *txn) error {
		out = nil
		for _, i := range order {
			errs[i] = nil
			if err := noteOutcome(ctx, tx, outs[i]); errors.Is(err, ErrClaimLost) {
				errs[i] = err
			} else if err != nil {
				return fmt.Errorf("note delivery outcomes: %w", err)
			}
		}
		if n <= 0 {
			return nil
		}
		var err error
		out, err = claimEvents(ctx, tx, claim, now, n, hold)
		if err != nil {
			return fmt.Errorf("claim events: %w", err)
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("outbox: %w", err)
		for i := range errs {
			errs[i] = err
		}
		return errs, nil, err
	}
	if len(out) == 0 {
		return errs, nil, nil
	}
	events := make([]Event, len(out))
	for i := range out {
		events[i] = out[i].Event
	}
	if err := s.fillCallData(ctx, events); err != nil {
		return errs, nil, err
	}
	for i := range out {
		out[i].Event = events[i]
	}
	return errs, out, nil
}

// claimEvents claims up to n events due at now for claim inside tx
// (ClaimEvents), and returns them without the data of the events of a
// call's own record.
func claimEvents(ctx context.Context, tx *txn, claim string, now time.Time, n int, hold time.Duration) ([]Delivery, error) {
	t := now.UnixNano()
	res, err := tx.ExecContext(ctx, claimQuery(tx.dialect), claim, now.Add(hold).UnixNano(), t, t, n)
	if err != nil {
		return nil, err
	}
	if k, err := res.RowsAffected(); err != nil || k == 0 {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, claimedQuery, claim)
	if err != nil {
		return nil, err
	}
	var out []Delivery
	for rows.Next() {
		d := Delivery{Claim: claim}
		if d.Event, err = scanEvent(rows, &d.URL, &d.Secret); err != nil {
			return nil, errors.Join(err, rows.Close())
		}
		out = append(out, d)
	}
	return out, errors.Join(rows.Err(), rows.Close())
}

// noteOutcome notes one outcome inside tx (NoteOutcomes).
func noteOutcome(ctx context.Context, tx *txn, o Outcome) error {
	d := o.Delivery
	if !o.Delivered {
		status, at := EventPending, nextNever
		if !o.Next.IsZero() {
			at = o.Next.UnixNano()
		} else {
			status = EventFailed
		}
		res, err := tx.ExecContext(ctx, noteRetryQuery, status, at, clipError(o.Why), d.ID, d.Claim)
		return claimed(res, err, d.ID)
	}
	if err := lockCall(ctx, tx, d.CallID); err != nil {
		return err
	}
	t := o.At.UnixNano()
	res, err := tx.ExecContext(ctx, noteDeliveredQuery, t, d.ID, d.Claim)
	if err := claimed(res, err, d.ID); err != nil || d.CallID == "" {
		return err
	}
	_, err = tx.ExecContext(ctx, nextDueQuery, t, d.CallID, d.CallID, d.Sequence)
	return err
}

// claimed turns the result of an UPDATE of one claimed event into nil,
// ErrClaimLost when it changed no row, or the error.
func claimed(res sql.Result, err error, id string) error {
	if err != nil {
		return fmt.Errorf("event %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("event %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("event %s: %w", id, ErrClaimLost)
	}
	return nil
}

// maxErrorText bounds the last error kept with an event.
const maxErrorText = 300

// clipError keeps the first maxErrorText bytes of why, on one line.
func clipError(why string) string {
	why = strings.Join(strings.Fields(why), " ")
	if len(why) > maxErrorText {
		why = why[:maxErrorText]
	}
	return why
}

// endSweepBatch is how many ended bindings one sweep statement reports.
const endSweepBatch = 500

// The reasons a binding.ended event gives.
const (
	// EndReleased is a binding released (or renewed) before its time.
	EndReleased = "released"
	// EndExpired is a binding whose lifetime ran out.
	EndExpired = "expired"
	// EndClosed is a binding that ended before its lifetime without a
	// release: its order closed and the grace after closing passed.
	EndClosed = "closed"
)

// bindingEnd is the data of a binding.ended event.
type bindingEnd struct {
	Binding   string `json:"binding"`
	Order     string `json:"order"`
	Host      string `json:"host"`
	Extension string `json:"extension"`
	Reason    string `json:"reason"`
	EndedAt   string `json:"ended_at"`
}

// ReportEndedBindings writes binding.ended for every binding whose end
// passed by now and is not reported yet (expired, or closed for good; a
// release reports its own end at once), and returns how many ends it
// noted. Each end is marked reported by a conditional UPDATE in the same
// transaction as its event, so that however many nodes sweep at once,
// every end is reported exactly once. Ends of merchants without a webhook
// are marked too, with no event.
func (s *Store) ReportEndedBindings(ctx context.Context, now time.Time) (int, error) {
	// A read first: a sweep that finds nothing does not take SQLite's
	// one writer.
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM bindings WHERE end_reported = 0 AND end_at <= ? LIMIT 1`,
		now.UnixNano()).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("report ended bindings: %w", err)
	}
	total := 0
	for {
		n, err := s.reportEndedBatch(ctx, now)
		total += n
		if err != nil || n < endSweepBatch {
			return total, err
		}
	}
}

// reportEndedBatch reports at most endSweepBatch ended bindings.
func (s *Store) reportEndedBatch(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *txn) error {
		n = 0
		rows, err := tx.QueryContext(ctx, `UPDATE bindings SET end_reported = 1
			WHERE end_reported = 0 AND id IN (SELECT id FROM bindings WHERE end_reported = 0 AND end_at <= ?
				ORDER BY end_at LIMIT ?`+tx.dialect.skipLocked()+`)
			RETURNING id, merchant, order_id, host, extension, expires_at, released_at, end_at`,
			now.UnixNano(), endSweepBatch)
		if err != nil {
			return err
		}
		var ends []NewEvent
		for rows.Next() {
			var e bindingEnd
			var merchant string
			var expires, end int64
			var released sql.NullInt64
			if err := rows.Scan(&e.Binding, &merchant, &e.Order, &e.Host, &e.Extension, &expires, &released, &end); err != nil {
				return errors.Join(err, rows.Close())
			}
			switch {
			case released.Valid:
				e.Reason = EndReleased
			case end < expires:
				e.Reason = EndClosed
			default:
				e.Reason = EndExpired
			}
			at := time.Unix(0, end).UTC()
			e.EndedAt = callrec.FormatTime(at)
			ends = append(ends, NewEvent{Type: EventBindingEnded, Merchant: merchant, At: at, Data: e})
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, e := range ends {
			if _, err := s.recordEvent(ctx, tx, e); err != nil {
				return err
			}
		}
		n = len(ends)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("report ended bindings: %w", err)
	}
	return n, nil
}

// purgeBatch is how many events one statement of PurgeDelivered deletes:
// on SQLite the calls' writes wait while it holds the one writer, so a
// week's worth of events goes in many short statements, the calls' writes
// taking their turns between them.
const purgeBatch = 500

// PurgeDelivered deletes the events delivered before before, and returns
// how many: a receiver that took an event has it, and the outbox must not
// grow without end. Pending and failed events are kept.
func (s *Store) PurgeDelivered(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		res, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE seq IN (SELECT seq FROM events
			WHERE status = 'delivered' AND delivered_at < ? LIMIT ?)`, before.UnixNano(), purgeBatch)
		if err != nil {
			return total, fmt.Errorf("purge events: %w", err)
		}
		n, err := res.RowsAffected()
		total += int(n)
		if err != nil || n < purgeBatch {
			return total, err
		}
	}
}
