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

// Calls follow the order: the platform moves a binding's order status as
// the order goes on (shipped → delivered → closed, after_sale from
// delivered or closed and back to closed), and a closed order's calls end
// protection.after_close later, unless after-sale service reopens it.

// Order statuses a binding's order moves through.
const (
	OrderShipped   = "shipped"
	OrderDelivered = "delivered"
	OrderClosed    = "closed"
	OrderAfterSale = "after_sale"
)

// orderMoves are the statuses each status may move to, in the order
// errors list them.
var orderMoves = map[string][]string{
	OrderShipped:   {OrderDelivered},
	OrderDelivered: {OrderClosed, OrderAfterSale},
	OrderClosed:    {OrderAfterSale},
	OrderAfterSale: {OrderClosed},
}

// lifecycleList names the statuses an order's binding follows, for errors.
const lifecycleList = "shipped, delivered, closed or after_sale"

// ParseCalls reads the ways a binding takes calls: both (or ""),
// to_consignee or from_consignee.
func ParseCalls(s string) (callrec.Calls, error) {
	switch c := callrec.Calls(s); c {
	case "":
		return callrec.CallsBoth, nil
	case callrec.CallsBoth, callrec.CallsToConsignee, callrec.CallsFromConsignee:
		return c, nil
	}
	return "", fmt.Errorf("%w calls %q: want both, to_consignee (no calls back) or from_consignee (no calls to the consignee)",
		ErrInvalid, s)
}

// SetOrderStatus moves the order of binding id to status at now, as the
// order's lifecycle allows, and returns the binding as it is at now.
// Closing the order ends the binding afterClose later (or at its own
// expiry, if that comes first), as if it expired then: calls stop, and so
// does its rental. after_sale before that end puts the end back where the
// binding's ttl put it. The same status again changes nothing.
//
// It returns ErrNotFound for an unknown binding, ErrInvalid for a status
// that is not one of the lifecycle's, ErrTransition, naming where the
// order may go, for a move the lifecycle does not allow, and ErrEnded
// for a binding that has already ended; then nothing changes.
func (s *Store) SetOrderStatus(ctx context.Context, id, status string, afterClose time.Duration, now time.Time) (*Binding, error) {
	if _, ok := orderMoves[status]; !ok {
		what := "unknown"
		if status == "" {
			what = "none given"
		}
		return nil, fmt.Errorf("%w order status %q: %s; want %s", ErrInvalid, status, what, lifecycleList)
	}
	if afterClose <= 0 {
		return nil, fmt.Errorf("%w after_close %s: must be positive", ErrInvalid, afterClose)
	}
	now = now.UTC()
	err := s.tx(ctx, func(tx *txn) error {
		b, err := scanBinding(tx.QueryRowContext(ctx, `SELECT `+bindingCols+` FROM bindings WHERE id = ?`+
			tx.dialect.forUpdate(), id), now)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("binding %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if b.OrderStatus == status {
			return nil
		}
		if b.Status != StatusActive {
			return fmt.Errorf("binding %s is %s: %w; its order's status no longer moves its calls (renew gives the order a new binding)",
				id, b.Status, ErrEnded)
		}
		if moves := orderMoves[b.OrderStatus]; !slices.Contains(moves, status) {
			return fmt.Errorf("%w from %s to %s: from %s it moves to %s", ErrTransition, b.OrderStatus, status,
				b.OrderStatus, orList(moves))
		}
		return moveOrder(ctx, tx, b, status, afterClose, now)
	})
	if err != nil {
		if isSentinel(err) {
			return nil, err
		}
		return nil, fmt.Errorf("order status: %w", err)
	}
	b, err := scanBinding(s.db.QueryRowContext(ctx, `SELECT `+bindingCols+` FROM bindings WHERE id = ?`, id), now)
	if err != nil {
		return nil, fmt.Errorf("order status: %w", err)
	}
	return b, nil
}

// moveOrder writes b's new status and, on closing or reopening, its end.
// A released binding keeps its end (end_at) where the release put it.
func moveOrder(ctx context.Context, tx *txn, b *Binding, status string, afterClose time.Duration, now time.Time) error {
	expires, closedAt := b.ExpiresAt, sql.NullInt64{}
	switch status {
	case OrderClosed:
		expires = b.ttlEnd
		if end := now.Add(afterClose); end.Before(expires) {
			expires = end
		}
		closedAt = ns(now)
	case OrderAfterSale:
		expires = b.ttlEnd
	}
	_, err := tx.ExecContext(ctx, `UPDATE bindings SET order_status = ?, order_closed_at = ?, expires_at = ?,
		end_at = CASE WHEN released_at IS NULL THEN ? ELSE end_at END WHERE id = ?`,
		status, closedAt, expires.UnixNano(), expires.UnixNano(), b.ID)
	return err
}

// orList writes "a", "a or b", "a, b or c".
func orList(xs []string) string {
	if len(xs) < 2 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}
