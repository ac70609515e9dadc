package binding

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vnum/vnum/callrec"
)

// The types of call events (README "Call events"). The events of a call's
// own record (started, ringing, answered, refused, ended) are written by
// the database in the statement that changes the CDR row (migration
// 0015); the others by RecordEvent or in the transaction of the change
// they report.
const (
	// EventCallStarted: a call reached one of the merchant's bindings (its
	// extension resolved, or a consignee called back).
	EventCallStarted = "call.started"
	// EventCallRinging: B (or a callback's party) rings.
	EventCallRinging = "call.ringing"
	// EventCallAnswered: B answered.
	EventCallAnswered = "call.answered"
	// EventCallRefused: the call was refused (the protection rules, an
	// overload), with the reason.
	EventCallRefused = "call.refused"
	// EventCallEnded: the call ended; its data is the CDR.
	EventCallEnded = "call.ended"
	// EventBindingEnded: a binding ended (released, expired or closed).
	EventBindingEnded = "binding.ended"
	// EventConsigneeBlocked: the consignee (or an operator) blocked a
	// caller.
	EventConsigneeBlocked = "consignee.blocked"
)

// EventTypes returns every event type, in the order a call's events come.
func EventTypes() []string {
	return []string{EventCallStarted, EventCallRinging, EventCallAnswered, EventCallRefused, EventCallEnded,
		EventBindingEnded, EventConsigneeBlocked}
}

// The delivery states of an event.
const (
	// EventPending is an event not yet delivered: due, waiting for its
	// next attempt, or waiting for an earlier event of its call.
	EventPending = "pending"
	// EventDelivered is an event a receiver took (a 2xx answer).
	EventDelivered = "delivered"
	// EventFailed is an event every attempt of the retry schedule failed
	// for; it is kept until retried by hand (RetryEvent).
	EventFailed = "failed"
)

// nextNever is the next_at of an event with no attempt to come: a failed
// event, and an event that waits for an earlier event of its call until
// that one is delivered (EventDelivered then makes it due). Only the
// first undelivered event of a call is ever due, so the workers looking
// for due events never pass over the ones waiting behind it.
const nextNever int64 = 1<<63 - 1

// lockCall locks the CDR row of call (PostgreSQL; SQLite's write
// transaction holds the whole database), which the call's own writes, and
// the triggers that write its events, lock too: events written and the
// delivery that makes the call's next event due see each other. "" locks
// nothing.
func lockCall(ctx context.Context, tx *txn, call string) error {
	if call == "" || tx.dialect != postgresDialect {
		return nil
	}
	_, err := tx.ExecContext(ctx, lockCallQuery, call)
	return err
}

// lockCallQuery is lockCall's statement (PostgreSQL only).
const lockCallQuery = `SELECT 1 FROM cdrs WHERE id = ? FOR UPDATE`

// Event is one call event: what is sent to the merchant's endpoint (Body)
// and how its delivery stands.
type Event struct {
	// ID names the event; every attempt to deliver it carries the same id.
	ID string
	// Type is one of the Event* types.
	Type string
	// CreatedAt is when what the event reports happened (UTC).
	CreatedAt time.Time
	// Merchant is the merchant whose endpoint receives the event.
	Merchant string
	// CallID is the id of the call's CDR, "" for an event of no call.
	CallID string
	// Sequence is the event's place among its call's events, from 1; 1
	// for an event of no call.
	Sequence int
	// Data is the event's data, a JSON object. It never holds the
	// consignee's number or keys the consignee pressed.
	Data json.RawMessage
	// Status is pending, delivered or failed.
	Status string
	// Attempts counts the delivery attempts made since the event was
	// written or last retried by hand.
	Attempts int
	// NextAt is when the next attempt may be made (zero: now; an event
	// behind a failed one of its call has none).
	NextAt time.Time
	// LastError says why the last attempt failed.
	LastError string
	// DeliveredAt is when a receiver took the event.
	DeliveredAt time.Time
}

// eventBody is the JSON a receiver gets.
type eventBody struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt string          `json:"created_at"`
	Merchant  string          `json:"merchant"`
	CallID    string          `json:"call_id,omitempty"`
	Sequence  int             `json:"sequence"`
	Data      json.RawMessage `json:"data"`
}

// Body returns the JSON document a receiver gets: id, type, created_at,
// merchant, call_id (for the events of a call), sequence and data. It is
// the same on every attempt.
func (e Event) Body() ([]byte, error) {
	return json.Marshal(eventBody{ID: e.ID, Type: e.Type, CreatedAt: callrec.FormatTime(e.CreatedAt),
		Merchant: e.Merchant, CallID: e.CallID, Sequence: e.Sequence, Data: e.data()})
}

// data is Data, or an empty object when there is none.
func (e Event) data() json.RawMessage {
	if len(e.Data) == 0 {
		return json.RawMessage(`{}`)
	}
	return e.Data
}

// MarshalJSON writes the event as the admin API lists it: the body's
// fields and the delivery's state.
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		eventBody
		Status      string  `json:"status"`
		Attempts    int     `json:"attempts"`
		NextAt      *string `json:"next_attempt_at"`
		LastError   string  `json:"last_error"`
		DeliveredAt *string `json:"delivered_at"`
	}{
		eventBody: eventBody{ID: e.ID, Type: e.Type, CreatedAt: callrec.FormatTime(e.CreatedAt), Merchant: e.Merchant,
			CallID: e.CallID, Sequence: e.Sequence, Data: e.data()},
		Status: e.Status, Attempts: e.Attempts, NextAt: timePtr(e.NextAt), LastError: e.LastError,
		DeliveredAt: timePtr(e.DeliveredAt),
	})
}

// NewEvent is an event RecordEvent writes.
type NewEvent struct {
	// Type is one of the Event* types.
	Type string
	// Merchant receives the event; it must be a merchant's id.
	Merchant string
	// CallID is the id of the call's CDR when the event belongs to a call
	// (its sequence follows the call's events so far), else "".
	CallID string
	// At is when what the event reports happened; zero means now on the
	// store's clock.
	At time.Time
	// Data is marshalled to the event's JSON data (an object; nil is {}).
	// It must never hold the consignee's number, nor keys the consignee
	// pressed.
	Data any
}

// RecordEvent writes one event in a transaction of its own, for a change
// that is not in the store (a call refused before it had a record). It
// writes nothing, and returns false, when the merchant has no webhook:
// events are kept for registered endpoints only. A change that is in the
// store writes its event in the change's own transaction instead
// (recordEvent), so that neither is kept without the other.
func (s *Store) RecordEvent(ctx context.Context, e NewEvent) (written bool, err error) {
	err = s.tx(ctx, func(tx *txn) error {
		written, err = s.recordEvent(ctx, tx, e)
		return err
	})
	if err != nil && !isSentinel(err) {
		err = fmt.Errorf("record event: %w", err)
	}
	return written, err
}

// recordEvent writes e inside tx, the transaction of the change it
// reports, when the merchant has a webhook, and reports whether it did.
// An event of a call takes the next sequence number of the call's events;
// the CDR row is locked first (PostgreSQL), which orders it with the
// events the row's own writes add.
func (s *Store) recordEvent(ctx context.Context, tx *txn, e NewEvent) (bool, error) {
	if !slices.Contains(EventTypes(), e.Type) {
		return false, fmt.Errorf("%w event type %q", ErrInvalid, e.Type)
	}
	if e.Merchant == "" {
		return false, fmt.Errorf("%w event %s: no merchant", ErrInvalid, e.Type)
	}
	data := []byte(`{}`)
	if e.Data != nil {
		var err error
		if data, err = json.Marshal(e.Data); err != nil {
			return false, fmt.Errorf("%w event %s data: %v", ErrInvalid, e.Type, err)
		}
		if len(data) == 0 || data[0] != '{' {
			return false, fmt.Errorf("%w event %s data: want a JSON object, got %.20s", ErrInvalid, e.Type, data)
		}
	}
	at := e.At
	if at.IsZero() {
		at = s.Now()
	}
	id, err := newEventID(at)
	if err != nil {
		return false, err
	}
	if err := lockCall(ctx, tx, e.CallID); err != nil {
		return false, err
	}
	// An event behind one of its call that is not delivered waits
	// (nextNever) until that one's delivery makes it due.
	res, err := tx.ExecContext(ctx, `INSERT INTO events (id, type, merchant, call_id, sequence, created_at, data, next_at)
		SELECT ?, ?, ?, ?,
			COALESCE((SELECT MAX(sequence) FROM events WHERE call_id = ?), 0) + 1, ?, ?,
			CASE WHEN EXISTS (SELECT 1 FROM events WHERE call_id = ? AND status <> 'delivered') THEN CAST(? AS BIGINT) ELSE 0 END
		WHERE EXISTS (SELECT 1 FROM webhooks WHERE merchant = ?)`,
		id, e.Type, e.Merchant, text(e.CallID), e.CallID, at.UnixNano(), string(data), e.CallID, nextNever, e.Merchant)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// newEventID returns the id of an event of what happened at at: "ev_",
// at in Unix nanoseconds as 16 hex digits, then 16 random hex digits, the
// form the database gives the events it writes itself (migration 0015).
// Ids of new events sort after older ones, so they land at the end of
// their unique index.
func newEventID(at time.Time) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return fmt.Sprintf("ev_%016x%s", uint64(at.UnixNano()), hex.EncodeToString(b[:])), nil
}

// eventCols are the columns scanEvent reads, of events e.
const eventCols = `e.id, e.type, e.created_at, e.merchant, e.call_id, e.sequence, e.data, e.status, e.attempts,
	e.next_at, e.last_error, e.delivered_at`

func scanEvent(r scanner, extra ...any) (Event, error) {
	var e Event
	var created, next int64
	var call, data sql.NullString
	var delivered sql.NullInt64
	if err := r.Scan(append([]any{&e.ID, &e.Type, &created, &e.Merchant, &call, &e.Sequence, &data, &e.Status,
		&e.Attempts, &next, &e.LastError, &delivered}, extra...)...); err != nil {
		return Event{}, err
	}
	e.CreatedAt = time.Unix(0, created).UTC()
	e.CallID = call.String
	if data.Valid {
		e.Data = json.RawMessage(data.String)
	}
	if next > 0 && next != nextNever {
		e.NextAt = time.Unix(0, next).UTC()
	}
	e.DeliveredAt = fromNS(delivered)
	return e, nil
}

// EventFilter selects events for ListEvents.
type EventFilter struct {
	// Merchant keeps one merchant's events; "" keeps all. An unknown
	// merchant is ErrNotFound.
	Merchant string
	// Status keeps pending, delivered or failed events; "" keeps all.
	Status string
	// Limit is how many events at most, the newest first; 0 means
	// DefaultEventLimit, and more than MaxEventLimit is ErrInvalid.
	Limit int
}

// The bounds of an event listing.
const (
	// DefaultEventLimit is how many events a listing shows unless told.
	DefaultEventLimit = 100
	// MaxEventLimit is the most events one listing shows.
	MaxEventLimit = 1000
)

// CheckEventStatus returns ErrInvalid unless st is "" or a delivery state.
func CheckEventStatus(st string) error {
	switch st {
	case "", EventPending, EventDelivered, EventFailed:
		return nil
	}
	return fmt.Errorf("%w status %q: want pending, delivered or failed", ErrInvalid, st)
}

// ListEvents returns the events f selects, the newest first, with their
// data as receivers get it.
func (s *Store) ListEvents(ctx context.Context, f EventFilter) ([]Event, error) {
	if err := CheckEventStatus(f.Status); err != nil {
		return nil, err
	}
	switch {
	case f.Limit == 0:
		f.Limit = DefaultEventLimit
	case f.Limit < 0 || f.Limit > MaxEventLimit:
		return nil, fmt.Errorf("%w limit %d: want 1 to %d", ErrInvalid, f.Limit, MaxEventLimit)
	}
	if err := s.knownMerchant(ctx, f.Merchant); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if f.Merchant != "" {
		where, args = append(where, "e.merchant = ?"), append(args, f.Merchant)
	}
	if f.Status != "" {
		where, args = append(where, "e.status = ?"), append(args, f.Status)
	}
	q := `SELECT ` + eventCols + ` FROM events e`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY e.seq DESC LIMIT ` + strconv.Itoa(f.Limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("list events: %w", err), rows.Close())
		}
		out = append(out, e)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	if err := s.fillCallData(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetEvent returns one event with its data, or ErrNotFound.
func (s *Store) GetEvent(ctx context.Context, id string) (Event, error) {
	e, err := scanEvent(s.db.QueryRowContext(ctx, `SELECT `+eventCols+` FROM events e WHERE e.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Event{}, fmt.Errorf("get event: %w", err)
	}
	es := []Event{e}
	if err := s.fillCallData(ctx, es); err != nil {
		return Event{}, err
	}
	return es[0], nil
}

// RetryEvent makes a failed event pending again with a new retry schedule
// (its attempts counted from zero), due now; a pending event is made due
// now. Either waits instead while an earlier event of its call is not
// delivered. The call's events behind it wait for it, then follow in
// order. A delivered event is ErrEnded (it is not sent twice by hand), an
// unknown one ErrNotFound.
func (s *Store) RetryEvent(ctx context.Context, id string, now time.Time) (Event, error) {
	err := s.tx(ctx, func(tx *txn) error {
		var status string
		var call sql.NullString
		var sequence int
		err := tx.QueryRowContext(ctx, `SELECT status, call_id, sequence FROM events WHERE id = ?`+tx.dialect.forUpdate(), id).
			Scan(&status, &call, &sequence)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("event %s: %w", id, ErrNotFound)
		case err != nil:
			return err
		case status == EventDelivered:
			return fmt.Errorf("event %s: delivered already: %w", id, ErrEnded)
		}
		// Due now, unless an earlier event of its call is not delivered:
		// then it waits for that one (nextNever).
		next := now.UnixNano()
		if call.Valid {
			var earlier int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM events
				WHERE call_id = ? AND sequence < ? AND status <> 'delivered'`, call.String, sequence).Scan(&earlier); err != nil {
				return err
			}
			if earlier > 0 {
				next = nextNever
			}
		}
		reset := `attempts`
		if status == EventFailed {
			reset = `0`
		}
		_, err = tx.ExecContext(ctx, `UPDATE events SET status = 'pending', attempts = `+reset+`, next_at = ?,
			last_error = CASE WHEN status = 'failed' THEN last_error ELSE '' END WHERE id = ?`, next, id)
		return err
	})
	if err != nil {
		if isSentinel(err) {
			return Event{}, err
		}
		return Event{}, fmt.Errorf("retry event: %w", err)
	}
	return s.GetEvent(ctx, id)
}

// PendingEvents returns how many events wait to be delivered, on every
// node.
func (s *Store) PendingEvents(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE status = 'pending'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("pending events: %w", err)
	}
	return n, nil
}

// fillCallData gives the events of a call's own record their data, read
// from the CDR row (one query for all of them): call.ended has the CDR as
// the CDR export writes it, the others the fields of the call known when
// they were written, which do not change afterwards.
func (s *Store) fillCallData(ctx context.Context, es []Event) error {
	var ids []any
	seen := map[string]bool{}
	for _, e := range es {
		if e.Data == nil && e.CallID != "" && !seen[e.CallID] {
			seen[e.CallID] = true
			ids = append(ids, e.CallID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+cdrCols+` FROM cdrs WHERE id IN (?`+strings.Repeat(", ?", len(ids)-1)+`)`, ids...)
	if err != nil {
		return fmt.Errorf("event data: %w", err)
	}
	cdrs := map[string]callrec.Record{}
	for rows.Next() {
		c, err := scanCDR(rows)
		if err != nil {
			return errors.Join(fmt.Errorf("event data: %w", err), rows.Close())
		}
		cdrs[c.ID] = c
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("event data: %w", err)
	}
	for i, e := range es {
		if e.Data == nil && e.CallID != "" {
			es[i].Data = callEventData(e.Type, cdrs[e.CallID])
		}
	}
	return nil
}

// callEventData is the data of an event of a call's own record. Every
// event carries the binding and the order, so that a receiver can handle
// each on its own; none carries the consignee's number, which no CDR
// holds.
func callEventData(typ string, c callrec.Record) json.RawMessage {
	if c.ID == "" {
		return json.RawMessage(`{}`)
	}
	if typ == EventCallEnded {
		return c.AppendJSON(nil)
	}
	type common struct {
		Binding string `json:"binding"`
		Order   string `json:"order"`
	}
	var v any
	switch typ {
	case EventCallStarted:
		v = struct {
			common
			Host      string `json:"host"`
			Extension string `json:"extension"`
			Direction string `json:"direction"`
			Caller    string `json:"caller"`
			StartedAt string `json:"started_at"`
		}{common{c.BindingID, c.Order}, c.Host, c.Extension, string(c.Direction), c.Caller, callrec.FormatTime(c.StartedAt)}
	case EventCallRinging:
		v = struct {
			common
			RingingAt string `json:"ringing_at"`
		}{common{c.BindingID, c.Order}, callrec.FormatTime(c.RingingAt)}
	case EventCallAnswered:
		v = struct {
			common
			AnsweredAt string `json:"answered_at"`
		}{common{c.BindingID, c.Order}, callrec.FormatTime(c.AnsweredAt)}
	case EventCallRefused:
		v = struct {
			common
			Reason string `json:"reason"`
		}{common{c.BindingID, c.Order}, string(c.Disposition)}
	default:
		v = common{c.BindingID, c.Order}
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Strings and fixed fields only: Marshal does not fail on them.
		return json.RawMessage(`{}`)
	}
	return b
}

// Blocked is the data of a consignee.blocked event: the block, the
// binding it was made through and that binding's order, who made it
// (consignee or operator), and the caller blocked when it is one PSTN
// number (a courier; "" when the block holds the merchant with all its
// accounts). It never holds the consignee's number, nor the keys pressed.
type Blocked struct {
	// Block is the block's id.
	Block string `json:"block"`
	// Binding is the binding the block was made through.
	Binding string `json:"binding"`
	// Order is that binding's order id.
	Order string `json:"order"`
	// Caller is the PSTN number blocked, or "" for the merchant itself.
	Caller string `json:"caller"`
	// By is who made the block: consignee or operator.
	By string `json:"by"`
}

// Event returns the consignee.blocked event of the block for merchant:
// callID is the CDR id of the call the consignee blocked from ("" for an
// operator's block), at when the block was made. The store that makes a
// block writes it with recordEvent in the block's own transaction.
func (b Blocked) Event(merchant, callID string, at time.Time) NewEvent {
	return NewEvent{Type: EventConsigneeBlocked, Merchant: merchant, CallID: callID, At: at, Data: b}
}
