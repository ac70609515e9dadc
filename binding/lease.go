package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vnum/vnum/callrec"
)

// One node, one process: a node's lease says which process serves a
// node.id now. The lease is a row of the store, taken with a conditional
// write (an insert that does nothing when the row exists, an update that
// changes the row only while it carries the token read), so that of two
// processes taking one lease at once exactly one wins, on SQLite as on
// PostgreSQL. Times in it are the holders' clocks, like every other time
// in the store: nodes sharing a store need clocks that agree (NTP) to well
// within LeaseTTL.
const (
	// LeaseRenewEvery is how often a serving node renews its lease.
	LeaseRenewEvery = 5 * time.Second
	// LeaseTTL is how long a lease lasts after its last renewal: three
	// renewals missed. Past it, the holder is taken to be gone.
	LeaseTTL = 3 * LeaseRenewEvery
)

// Holder names a process that holds, or wants, a node's lease.
type Holder struct {
	// Host is the holder's host name, for people.
	Host string
	// PID is the holder's process id.
	PID int
	// Machine names the holder's kernel boot and process namespace (empty
	// when unknown): a process whose Machine is the same sees the same
	// process ids, and can tell whether PID still runs.
	Machine string
}

// LeaseState is what the store holds of a node's lease.
type LeaseState struct {
	// Node is the node.id the lease is for.
	Node string
	// Holder is the process that took the lease last.
	Holder Holder
	// TakenAt, RenewedAt and ExpiresAt are when the holder took the lease,
	// renewed it last, and when it lapses unless renewed again.
	TakenAt, RenewedAt, ExpiresAt time.Time
	// ReleasedAt is when the holder let the lease go on a clean stop; zero
	// while it holds it, or when it never released it (a crash).
	ReleasedAt time.Time

	token string
}

// Held reports whether the lease is held at now: taken, not released and
// not expired.
func (st LeaseState) Held(now time.Time) bool {
	return st.ReleasedAt.IsZero() && now.Before(st.ExpiresAt)
}

// LeaseHeldError is TakeLease's refusal of a lease another process holds.
// It matches ErrLeaseHeld.
type LeaseHeldError struct {
	// State is the lease as read when it was refused.
	State LeaseState
}

func (e *LeaseHeldError) Error() string {
	h := e.State.Holder
	return fmt.Sprintf("the lease of node %q is held by pid %d on host %s (renewed %s, expires %s)",
		e.State.Node, h.PID, h.Host, e.State.RenewedAt.Format(time.RFC3339), e.State.ExpiresAt.Format(time.RFC3339))
}

// Unwrap makes the error match ErrLeaseHeld.
func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// LeaseOptions tune TakeLease.
type LeaseOptions struct {
	// TTL is how long the lease lasts after each renewal; zero means
	// LeaseTTL. Renew it well within TTL (LeaseRenewEvery for LeaseTTL).
	TTL time.Duration
	// Gone, when not nil, reports whether the holder of a lease that has
	// not expired is known to be dead (its process no longer runs): such a
	// lease is taken at once instead of after it expires.
	Gone func(LeaseState) bool
}

// Lease is a node's lease as its holder has it. While it holds the lease,
// the holder alone serves the node: it renews the lease, closes the
// node's interrupted calls, and releases it on a clean stop.
type Lease struct {
	s        *Store
	node     string
	token    string
	holder   Holder
	ttl      time.Duration
	previous *LeaseState
}

// leaseCols are the columns scanLease reads.
const leaseCols = `node, token, host, pid, machine, taken_at, renewed_at, expires_at, released_at`

func scanLease(r scanner) (LeaseState, error) {
	var st LeaseState
	var taken, renewed, expires int64
	var released sql.NullInt64
	if err := r.Scan(&st.Node, &st.token, &st.Holder.Host, &st.Holder.PID, &st.Holder.Machine,
		&taken, &renewed, &expires, &released); err != nil {
		return LeaseState{}, err
	}
	st.TakenAt, st.RenewedAt = time.Unix(0, taken).UTC(), time.Unix(0, renewed).UTC()
	st.ExpiresAt, st.ReleasedAt = time.Unix(0, expires).UTC(), fromNS(released)
	return st, nil
}

// NodeLease returns the lease of node as the store holds it, or
// ErrNotFound when no process ever took it.
func (s *Store) NodeLease(ctx context.Context, node string) (LeaseState, error) {
	st, err := scanLease(s.db.QueryRowContext(ctx, `SELECT `+leaseCols+` FROM node_leases WHERE node = ?`, node))
	if errors.Is(err, sql.ErrNoRows) {
		return LeaseState{}, fmt.Errorf("lease of node %q: %w", node, ErrNotFound)
	}
	if err != nil {
		return LeaseState{}, fmt.Errorf("lease of node %q: %w", node, err)
	}
	return st, nil
}

// leaseTakeTries bounds how often TakeLease reads the lease again after
// another process changed it between its read and its update.
const leaseTakeTries = 3

// TakeLease takes the lease of the store's node (WithNode) for h. A lease
// nobody holds (never taken, released, or expired) is taken; so is one
// whose holder o.Gone reports dead. A lease another process holds is
// refused with a *LeaseHeldError. Of several processes taking one lease
// at once, exactly one gets it.
func (s *Store) TakeLease(ctx context.Context, h Holder, o LeaseOptions) (*Lease, error) {
	if s.node == "" {
		return nil, fmt.Errorf("%w lease: the store was opened without a node (WithNode)", ErrInvalid)
	}
	ttl := o.TTL
	if ttl <= 0 {
		ttl = LeaseTTL
	}
	token, err := newID("l_")
	if err != nil {
		return nil, err
	}
	l := &Lease{s: s, node: s.node, token: token, holder: h, ttl: ttl}
	for range leaseTakeTries {
		now := s.Now()
		res, err := s.db.ExecContext(ctx, `INSERT INTO node_leases (node, token, host, pid, machine, taken_at, renewed_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node) DO NOTHING`,
			l.node, token, h.Host, h.PID, h.Machine, now.UnixNano(), now.UnixNano(), now.Add(ttl).UnixNano())
		if err != nil {
			return nil, fmt.Errorf("take lease of node %q: %w", l.node, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("take lease of node %q: %w", l.node, err)
		} else if n == 1 {
			return l, nil
		}
		cur, err := s.NodeLease(ctx, l.node)
		if errors.Is(err, ErrNotFound) {
			continue // deleted by hand since the insert: insert again
		}
		if err != nil {
			return nil, err
		}
		if cur.Held(now) && (o.Gone == nil || !o.Gone(cur)) {
			return nil, &LeaseHeldError{State: cur}
		}
		res, err = s.db.ExecContext(ctx, `UPDATE node_leases SET token = ?, host = ?, pid = ?, machine = ?,
			taken_at = ?, renewed_at = ?, expires_at = ?, released_at = NULL WHERE node = ? AND token = ?`,
			token, h.Host, h.PID, h.Machine, now.UnixNano(), now.UnixNano(), now.Add(ttl).UnixNano(), l.node, cur.token)
		if err != nil {
			return nil, fmt.Errorf("take lease of node %q: %w", l.node, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("take lease of node %q: %w", l.node, err)
		} else if n == 1 {
			l.previous = &cur
			return l, nil
		}
		// Another process changed the lease since it was read (renewed
		// it, or took it first): read it again.
	}
	cur, err := s.NodeLease(ctx, l.node)
	if err != nil {
		return nil, err
	}
	return nil, &LeaseHeldError{State: cur}
}

// Node returns the node.id the lease is for.
func (l *Lease) Node() string { return l.node }

// Previous returns the lease as it was before this process took it: the
// last holder, and whether it released the lease (a clean stop) or let
// it expire (a crash). ok is false when the lease was never taken before.
func (l *Lease) Previous() (st LeaseState, ok bool) {
	if l.previous == nil {
		return LeaseState{}, false
	}
	return *l.previous, true
}

// Renew extends the lease to TTL past now. It returns an error matching
// ErrLeaseLost when another process has taken the lease since (this one
// let it expire, then someone took it over), and a plain store error when
// the store did not answer: the lease is still this process's until it
// expires, and a later Renew may succeed.
func (l *Lease) Renew(ctx context.Context) error {
	now := l.s.Now()
	res, err := l.s.db.ExecContext(ctx, `UPDATE node_leases SET renewed_at = ?, expires_at = ?
		WHERE node = ? AND token = ? AND released_at IS NULL`,
		now.UnixNano(), now.Add(l.ttl).UnixNano(), l.node, l.token)
	if err != nil {
		return fmt.Errorf("renew lease of node %q: %w", l.node, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("renew lease of node %q: %w", l.node, err)
	} else if n == 1 {
		return nil
	}
	return l.lost(ctx)
}

// lost is the ErrLeaseLost of a lease that no longer carries this
// holder's token, naming who holds it now where the store says.
func (l *Lease) lost(ctx context.Context) error {
	cur, err := l.s.NodeLease(ctx, l.node)
	if err != nil || cur.token == l.token {
		return fmt.Errorf("node %q: %w", l.node, ErrLeaseLost)
	}
	return fmt.Errorf("node %q: %w: taken at %s by pid %d on host %s", l.node, ErrLeaseLost,
		cur.TakenAt.Format(time.RFC3339), cur.Holder.PID, cur.Holder.Host)
}

// Release lets the lease go, marking it released (a clean stop), so that
// the next process of the node takes it at once. Releasing a lease lost
// to another process changes nothing.
func (l *Lease) Release(ctx context.Context) error {
	now := l.s.Now()
	_, err := l.s.db.ExecContext(ctx, `UPDATE node_leases SET released_at = ?, expires_at = ?
		WHERE node = ? AND token = ? AND released_at IS NULL`, now.UnixNano(), now.UnixNano(), l.node, l.token)
	if err != nil {
		return fmt.Errorf("release lease of node %q: %w", l.node, err)
	}
	return nil
}

// Recovered is what RecoverInterrupted closed.
type Recovered struct {
	// Closed is how many open rows it closed as interrupted.
	Closed int64
	// Legs are the dialogs of the legs those calls had up (UpdateCDR), by
	// the CDR's id, for signalling to end with a BYE each. Rows with no
	// leg answered are not in it.
	Legs map[string]callrec.Legs
}

// RecoverInterrupted closes the rows a crash left open, as interrupted by
// the system, at the last time each call was known to be going on: an
// answered call that was refreshed (RefreshCDR) ends at its last refresh
// and keeps, and is billed for, the talk time known then; a call never
// refreshed ends when it was last seen (answered, ringing or started) and
// bills nothing, because no talk time is known. It returns how many rows
// it closed and the dialogs of their legs, which the rows forget.
//
// It closes only the rows of the lease's node, and rows from before nodes
// were recorded, and only while this process holds the lease, in the
// same transaction: the calls of another node, or of another process of
// this node that holds the lease now, are calls in progress, not left
// over from a crash. Run it after TakeLease, before taking calls (and
// after writing the ends a stopped node spooled: a row ended by its own
// call is not interrupted).
func (l *Lease) RecoverInterrupted(ctx context.Context) (Recovered, error) {
	var rec Recovered
	err := l.s.tx(ctx, func(tx *txn) error {
		rec = Recovered{Legs: map[string]callrec.Legs{}}
		rows, err := tx.QueryContext(ctx, `SELECT id, leg_a, leg_b FROM cdrs
			WHERE ended_at IS NULL AND node IN (?, '') AND (leg_a IS NOT NULL OR leg_b IS NOT NULL)`, l.node)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var a, b sql.NullString
			if err := rows.Scan(&id, &a, &b); err != nil {
				return err
			}
			rec.Legs[id] = callrec.Legs{A: a.String, B: b.String}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// RETURNING names the rows this statement closed: a row another
		// process ended between the SELECT and here (PostgreSQL reads
		// committed) keeps no leg to end.
		closed, err := tx.QueryContext(ctx, `UPDATE cdrs SET
			ended_at = COALESCE(alive_at, answered_at, ringing_at, started_at),
			disposition = ?, hangup_by = ?,
			talk_seconds = CASE WHEN alive_at IS NULL THEN 0 ELSE talk_seconds END,
			billed_minutes = CASE WHEN alive_at IS NULL THEN 0 ELSE billed_minutes END,
			fee = CASE WHEN alive_at IS NULL THEN 0 ELSE fee END,
			leg_a = NULL, leg_b = NULL
			WHERE ended_at IS NULL AND node IN (?, '')
			AND EXISTS (SELECT 1 FROM node_leases WHERE node = ? AND token = ? AND released_at IS NULL)
			RETURNING id`,
			callrec.DispositionInterrupted, callrec.HangupSystem, l.node, l.node, l.token)
		if err != nil {
			return err
		}
		defer closed.Close()
		ended := map[string]bool{}
		for closed.Next() {
			var id string
			if err := closed.Scan(&id); err != nil {
				return err
			}
			ended[id] = true
			rec.Closed++
		}
		if err := closed.Err(); err != nil {
			return err
		}
		for id := range rec.Legs {
			if !ended[id] {
				delete(rec.Legs, id)
			}
		}
		return nil
	})
	if err != nil {
		return Recovered{}, fmt.Errorf("recover cdrs: %w", err)
	}
	if rec.Closed == 0 {
		rec.Legs = nil
		// Nothing to close, or the lease is no longer this process's.
		if cur, err := l.s.NodeLease(ctx, l.node); err != nil || cur.token != l.token || !cur.ReleasedAt.IsZero() {
			return Recovered{}, l.lost(ctx)
		}
	}
	return rec, nil
}
