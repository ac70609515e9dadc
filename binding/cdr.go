package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vnum/vnum/callrec"
)

// Rate prices a call with the given talk time: whole seconds rounded down,
// except that any talk above zero counts at least one second; minutes are
// the seconds rounded up to the whole minute (0 s → 0, 1 s → 1, 60 s → 1,
// 61 s → 2); the fee is minutes times perMinute.
func Rate(talk time.Duration, perMinute Micros) (talkSeconds, billedMinutes int, fee Micros) {
	if talk <= 0 {
		return 0, 0, 0
	}
	talkSeconds = max(int(talk/time.Second), 1)
	billedMinutes = (talkSeconds + 59) / 60
	return talkSeconds, billedMinutes, Micros(billedMinutes) * perMinute
}

// The statements of a call's record, prepared once per store (see
// hotQueries): StartCDR's, UpdateCDR's, RefreshCDR's, FinishCDR's, and
// cdrEnded's check when an update changed no row.
const (
	startCDRQuery = `INSERT INTO cdrs (id, call_id, node, merchant, binding_id, order_id, host, extension,
		direction, caller, caller_kind, started_at, ringing_at, answered_at, disposition, hangup_by, sip_status, recorded)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	updateCDRQuery = `UPDATE cdrs SET call_id = ?, merchant = ?, binding_id = ?, order_id = ?,
		host = ?, extension = ?, direction = ?, caller = ?, caller_kind = ?, ringing_at = ?, answered_at = ?,
		disposition = ?, hangup_by = ?, sip_status = ?, recorded = ?, leg_a = ?, leg_b = ? WHERE id = ?`
	refreshCDRQuery = `UPDATE cdrs SET answered_at = ?, alive_at = ?,
		talk_seconds = ?, billed_minutes = ?, fee = ? WHERE id = ? AND ended_at IS NULL`
	finishCDRQuery = `UPDATE cdrs SET call_id = ?, merchant = ?, binding_id = ?, order_id = ?,
		host = ?, extension = ?, direction = ?, caller = ?, caller_kind = ?, ringing_at = ?, answered_at = ?,
		ended_at = ?, talk_seconds = ?, billed_minutes = ?, fee = ?, disposition = ?, hangup_by = ?, sip_status = ?,
		recorded = ?, leg_a = NULL, leg_b = NULL
		WHERE id = ? AND ended_at IS NULL`
	cdrEndedQuery = `SELECT COUNT(*) FROM cdrs WHERE id = ? AND ended_at IS NOT NULL`

	// The same updates for a record whose merchant and binding are those
	// it has (nearly always: a call learns its binding once): they leave
	// those two out of SET and name them in WHERE, so that SQLite does
	// not rewrite the entries of the indexes that hold them
	// (cdrs_binding_started, cdrs_merchant_started_id), which it does for
	// every indexed column a SET names, changed or not. An update that
	// changes no row this way runs as the full one.
	updateCDRSameQuery = `UPDATE cdrs SET call_id = ?, order_id = ?,
		host = ?, extension = ?, direction = ?, caller = ?, caller_kind = ?, ringing_at = ?, answered_at = ?,
		disposition = ?, hangup_by = ?, sip_status = ?, recorded = ?, leg_a = ?, leg_b = ?
		WHERE id = ? AND merchant = ? AND binding_id = ?`
	finishCDRSameQuery = `UPDATE cdrs SET call_id = ?, order_id = ?,
		host = ?, extension = ?, direction = ?, caller = ?, caller_kind = ?, ringing_at = ?, answered_at = ?,
		ended_at = ?, talk_seconds = ?, billed_minutes = ?, fee = ?, disposition = ?, hangup_by = ?, sip_status = ?,
		recorded = ?, leg_a = NULL, leg_b = NULL
		WHERE id = ? AND ended_at IS NULL AND merchant = ? AND binding_id = ?`
)

// StartCDR writes the row of a call that has just started. It fills ID
// ("c_" and 16 hex digits) and StartedAt (now) when they are empty.
func (s *Store) StartCDR(ctx context.Context, c *callrec.Record) error {
	if c.ID == "" {
		id, err := newID("c_")
		if err != nil {
			return err
		}
		c.ID = id
	}
	if c.StartedAt.IsZero() {
		c.StartedAt = s.Now()
	}
	c.StartedAt = c.StartedAt.UTC()
	if c.Node == "" {
		c.Node = s.node
	}
	_, err := s.db.ExecContext(ctx, startCDRQuery,
		c.ID, c.CallID, c.Node, c.Merchant, c.BindingID, c.Order, c.Host, c.Extension, c.Direction, c.Caller, c.CallerKind,
		c.StartedAt.UnixNano(), ns(c.RingingAt), ns(c.AnsweredAt), c.Disposition, c.HangupBy, c.SIPStatus, boolInt(c.Recorded))
	if isUnique(err) {
		return fmt.Errorf("cdr %s: %w", c.ID, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("start cdr: %w", err)
	}
	return nil
}

// UpdateCDR records a call's progress: the resolved binding, ringing and
// answer times, the disposition so far, and the dialogs of the legs
// answered so far (an empty one is stored as none), which the row keeps
// only until it ends. It does not end the call.
func (s *Store) UpdateCDR(ctx context.Context, c *callrec.Record, legs callrec.Legs) error {
	res, err := s.updateCDRRow(ctx, updateCDRSameQuery, updateCDRQuery,
		c.CallID, c.Merchant, c.BindingID, c.Order, c.Host, c.Extension, c.Direction, c.Caller, c.CallerKind,
		ns(c.RingingAt), ns(c.AnsweredAt), c.Disposition, c.HangupBy, c.SIPStatus, boolInt(c.Recorded), text(legs.A), text(legs.B), c.ID)
	if err != nil {
		return fmt.Errorf("update cdr: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update cdr: %w", err)
	} else if n == 0 {
		return fmt.Errorf("cdr %s: %w", c.ID, ErrNotFound)
	}
	return nil
}

// updateCDRRow runs full, an UPDATE of a record whose arguments are
// call_id, merchant, binding_id, the other columns it sets and the
// record's id, as same first: the statement that leaves merchant and
// binding_id out of SET and names them in WHERE, taking the same
// arguments with those two moved to the end. full runs only when same
// changed no row (a new merchant or binding, or no such open record);
// the result is that of the last statement run.
func (s *Store) updateCDRRow(ctx context.Context, same, full string, args ...any) (sql.Result, error) {
	narrow := make([]any, 0, len(args))
	narrow = append(append(append(narrow, args[0]), args[3:]...), args[1], args[2])
	res, err := s.db.ExecContext(ctx, same, narrow...)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return res, err
	}
	return s.db.ExecContext(ctx, full, args...)
}

// FinishCDR completes a call's row: EndedAt (now when zero), talk time,
// billed minutes and fee at r.PerMinute (see Rate). An empty disposition
// becomes answered or failed. A call refused by consignee protection or
// declined by the consignee (callrec.Disposition.Free) has no talk time
// and costs nothing, whatever its times: the notice the consignee heard
// before declining is not talk. The legs' dialogs (UpdateCDR) are dropped:
// an ended call has none. It returns ErrCDRFinished when the row was
// already finished, and ErrNotFound for an unknown ID: finishing a row
// again changes nothing, so an end may be written twice (a retry, the
// spool of a node that stopped in a store outage).
func (s *Store) FinishCDR(ctx context.Context, c *callrec.Record, r Rates) error {
	if c.EndedAt.IsZero() {
		c.EndedAt = s.Now()
	}
	c.EndedAt = c.EndedAt.UTC()
	c.TalkSeconds, c.BilledMinutes, c.Fee = 0, 0, 0
	if !c.AnsweredAt.IsZero() && !c.Disposition.Free() {
		c.TalkSeconds, c.BilledMinutes, c.Fee = Rate(c.EndedAt.Sub(c.AnsweredAt), r.PerMinute)
	}
	if c.Disposition == "" {
		c.Disposition = callrec.DispositionFailed
		if !c.AnsweredAt.IsZero() {
			c.Disposition = callrec.DispositionAnswered
		}
	}
	// Each statement is committed on its own like any transaction (the
	// narrow one, then the full one when that changed no row): the
	// condition on ended_at makes the row end once, whoever else ends
	// it at the same time (another node, Lease.RecoverInterrupted).
	res, err := s.updateCDRRow(ctx, finishCDRSameQuery, finishCDRQuery,
		c.CallID, c.Merchant, c.BindingID, c.Order, c.Host, c.Extension, c.Direction, c.Caller, c.CallerKind,
		ns(c.RingingAt), ns(c.AnsweredAt), c.EndedAt.UnixNano(), c.TalkSeconds, c.BilledMinutes, int64(c.Fee),
		c.Disposition, c.HangupBy, c.SIPStatus, boolInt(c.Recorded), c.ID)
	if err != nil {
		return fmt.Errorf("finish cdr: %w", err)
	}
	return s.updatedOpen(ctx, res, c.ID)
}

// RefreshCDR keeps the row of an answered call that goes on current
// (README "CDRs and billing"): it records alive as the last time the call was known to be
// up, with the talk time until then (c.AnsweredAt to alive), its billed
// minutes and its fee at r.PerMinute, rated as FinishCDR would rate a call
// ending at alive. A crash thus loses at most the time since the last
// refresh. It returns ErrInvalid when c was not answered, ErrCDRFinished
// when the row already ended (a refresh racing the call's end is dropped)
// and ErrNotFound for an unknown ID.
func (s *Store) RefreshCDR(ctx context.Context, c *callrec.Record, alive time.Time, r Rates) error {
	if c.AnsweredAt.IsZero() {
		return fmt.Errorf("%w cdr %s: refreshed before it was answered", ErrInvalid, c.ID)
	}
	talk, minutes, fee := Rate(alive.Sub(c.AnsweredAt), r.PerMinute)
	res, err := s.db.ExecContext(ctx, refreshCDRQuery,
		c.AnsweredAt.UnixNano(), alive.UnixNano(), talk, minutes, int64(fee), c.ID)
	if err != nil {
		return fmt.Errorf("refresh cdr: %w", err)
	}
	return s.updatedOpen(ctx, res, c.ID)
}

// updatedOpen turns an UPDATE of the open CDR row id that changed nothing
// into ErrCDRFinished, when the row has ended, or ErrNotFound. The update
// and this check are two statements, not one transaction, and need not
// be one: an ended row never opens again, so a row found ended here was
// ended when the update ran or has been since (either way its end is
// written already); a row absent, or open because it was written after
// the update, was not there when the update ran.
func (s *Store) updatedOpen(ctx context.Context, res sql.Result, id string) error {
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var ended int
	if err := s.db.QueryRowContext(ctx, cdrEndedQuery, id).Scan(&ended); err != nil {
		return fmt.Errorf("cdr %s: %w", id, err)
	}
	if ended == 0 {
		return fmt.Errorf("cdr %s: %w", id, ErrNotFound)
	}
	return fmt.Errorf("cdr %s: %w", id, ErrCDRFinished)
}

const cdrCols = `id, call_id, node, merchant, binding_id, order_id, host, extension, direction, caller, caller_kind, started_at,
	ringing_at, answered_at, ended_at, talk_seconds, billed_minutes, fee, disposition, hangup_by, sip_status, recorded`

func scanCDR(r scanner) (callrec.Record, error) {
	var c callrec.Record
	var started, ringing, answered, ended sql.NullInt64
	var fee, recorded int64
	if err := r.Scan(&c.ID, &c.CallID, &c.Node, &c.Merchant, &c.BindingID, &c.Order, &c.Host, &c.Extension, &c.Direction,
		&c.Caller, &c.CallerKind, &started, &ringing, &answered, &ended, &c.TalkSeconds, &c.BilledMinutes, &fee,
		&c.Disposition, &c.HangupBy, &c.SIPStatus, &recorded); err != nil {
		return callrec.Record{}, err
	}
	c.StartedAt, c.RingingAt, c.AnsweredAt, c.EndedAt = fromNS(started), fromNS(ringing), fromNS(answered), fromNS(ended)
	c.Fee = Micros(fee)
	c.Recorded = recorded != 0
	return c, nil
}

// GetCDR returns one call record, or ErrNotFound.
func (s *Store) GetCDR(ctx context.Context, id string) (callrec.Record, error) {
	c, err := scanCDR(s.db.QueryRowContext(ctx, `SELECT `+cdrCols+` FROM cdrs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return callrec.Record{}, fmt.Errorf("cdr %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return callrec.Record{}, fmt.Errorf("get cdr: %w", err)
	}
	return c, nil
}

// boolInt is a boolean as the cdrs table keeps it: 1 or 0 (an INTEGER on
// both dialects).
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
