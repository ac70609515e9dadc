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

// ClaimEvents claims up to n events that are due at now for one delivery
// attempt each, held for hold: no other worker, on any node, takes them
// until the attempt's outcome is noted or hold has passed (a worker that
// died). Each counts as an attempt. An event whose call has an earlier
// event not yet delivered is not taken: a call's events go in order, so a
// batch holds at most one event of any call. The events come with their
// data as receivers get it.
func (s *Store) ClaimEvents(ctx context.Context, now time.Time, n int, hold time.Duration) ([]Delivery, error) {
	if n <= 0 {
		return nil, nil
	}
	claim, err := newID("cl_")
	if err != nil {
		return nil, err
	}
	t := now.UnixNano()
	var out []Delivery
	err = s.tx(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `UPDATE events SET claim = ?, claimed_until = ?, attempts = attempts + 1
			WHERE seq IN (SELECT e.seq FROM events e
				WHERE e.status = 'pending' AND e.next_at <= ? AND e.claimed_until <= ?
				AND NOT EXISTS (SELECT 1 FROM events p
					WHERE p.call_id = e.call_id AND p.sequence < e.sequence AND p.status <> 'delivered')
				ORDER BY e.seq LIMIT ?`+tx.dialect.skipLocked()+`)`,
			claim, now.Add(hold).UnixNano(), t, t, n); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+eventCols+`, COALESCE(w.url, ''), COALESCE(w.secret, '')
			FROM events e LEFT JOIN webhooks w ON w.merchant = e.merchant WHERE e.claim = ? ORDER BY e.seq`, claim)
		if err != nil {
			return err
		}
		for rows.Next() {
			d := Delivery{Claim: claim}
			if d.Event, err = scanEvent(rows, &d.URL, &d.Secret); err != nil {
				return errors.Join(err, rows.Close())
			}
			out = append(out, d)
		}
		return errors.Join(rows.Err(), rows.Close())
	})
	if err != nil {
		return nil, fmt.Errorf("claim events: %w", err)
	}
	events := make([]Event, len(out))
	for i := range out {
		events[i] = out[i].Event
	}
	if err := s.fillCallData(ctx, events); err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Event = events[i]
	}
	return out, nil
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
	errs := make([]error, len(outs))
	// The calls' CDR rows are locked (PostgreSQL) in one order, so that
	// two nodes noting outcomes of the same calls never wait on each other
	// in a circle.
	order := make([]int, len(outs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(outs[a].Delivery.CallID, outs[b].Delivery.CallID) })
	err := s.tx(ctx, func(tx *txn) error {
		for _, i := range order {
			errs[i] = nil
			if err := noteOutcome(ctx, tx, outs[i]); errors.Is(err, ErrClaimLost) {
				errs[i] = err
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("note delivery outcomes: %w", err)
		}
	}
	return errs
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
		res, err := tx.ExecContext(ctx, `UPDATE events SET status = ?, next_at = ?, claim = NULL, claimed_until = 0,
			last_error = ? WHERE id = ? AND claim = ?`, status, at, clipError(o.Why), d.ID, d.Claim)
		return claimed(res, err, d.ID)
	}
	if err := lockCall(ctx, tx, d.CallID); err != nil {
		return err
	}
	t := o.At.UnixNano()
	res, err := tx.ExecContext(ctx, `UPDATE events SET status = 'delivered', delivered_at = ?, claim = NULL,
		claimed_until = 0, last_error = '' WHERE id = ? AND claim = ?`, t, d.ID, d.Claim)
	if err := claimed(res, err, d.ID); err != nil || d.CallID == "" {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE events SET next_at = ?
		WHERE call_id = ? AND status = 'pending' AND sequence = (SELECT MIN(sequence) FROM events
			WHERE call_id = ? AND sequence > ? AND status <> 'delivered')`, t, d.CallID, d.CallID, d.Sequence)
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

// PurgeDelivered deletes the events delivered before before, and returns
// how many: a receiver that took an event has it, and the outbox must not
// grow without end. Pending and failed events are kept.
func (s *Store) PurgeDelivered(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE seq IN (SELECT seq FROM events
		WHERE status = 'delivered' AND delivered_at < ? LIMIT 10000)`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("purge events: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
