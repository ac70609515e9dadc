package binding

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/internal/digits"
	"github.com/vnum/vnum/protection"
)

// Binding statuses, computed from the times of a binding.
const (
	StatusActive   = "active"
	StatusReleased = "released"
	StatusExpired  = "expired"
)

// The bounds of a binding's lifetime, in configuration (binding.ttl) and
// per request (README "Bindings"). A shorter ttl would still bill a day and hold its
// extension for the whole quarantine; a longer one outlives any order.
const (
	// MinTTL is the shortest lifetime a binding may have.
	MinTTL = time.Hour
	// MaxTTL is the longest lifetime a binding may have, 365 days.
	MaxTTL = 8760 * time.Hour
)

// orderStatuses are the order statuses vnum knows, true for those whose
// orders have shipped and may get a binding. A status outside this table
// is a typo or another platform's word, and is refused as unknown rather
// than as "not shipped", which would mislead.
var orderStatuses = map[string]bool{
	"unpaid": false, "paid": false, "cancelled": false, "closed": false,
	"shipped": true, "delivered": true, "after_sale": true,
}

// shippedList names the statuses that may get a binding, for errors.
const shippedList = "shipped, delivered or after_sale"

// checkOrderStatus returns nil for a shipped order's status,
// ErrNotShipped for a known status before shipping, and ErrInvalid for an
// unknown one or none.
func checkOrderStatus(st string) error {
	shipped, known := orderStatuses[st]
	switch {
	case shipped:
		return nil
	case st == "":
		return fmt.Errorf("%w order status: none given; want %s", ErrInvalid, shippedList)
	case !known:
		return fmt.Errorf("%w order status %q: unknown; want %s", ErrInvalid, st, shippedList)
	case st == "closed":
		return fmt.Errorf("%w order status closed: a closed order gets no binding; want %s", ErrInvalid, shippedList)
	}
	return fmt.Errorf("%w: status %s", ErrNotShipped, st)
}

// Binding maps a virtual number (Host, Extension) to a consignee for one
// order of one merchant. Its JSON form never contains the consignee; use
// AdminView where an operator must see it.
type Binding struct {
	// ID is the binding's identifier, "b_" and 16 hex digits.
	ID string
	// Merchant owns the binding.
	Merchant string
	// Order is the merchant's order identifier.
	Order string
	// Host is X, 5 to 15 digits.
	Host string
	// Extension is E.
	Extension string
	// Consignee is B in E.164 form. It must not reach merchant-facing output.
	Consignee string
	// OrderStatus is the order's status: given at creation, then moved
	// by SetOrderStatus.
	OrderStatus string
	// Calls says which ways the binding takes calls (both by default).
	Calls callrec.Calls
	// CreatedAt is when the binding was made (UTC).
	CreatedAt time.Time
	// ExpiresAt is when the binding ends unless released (UTC): CreatedAt
	// plus the TTL, or earlier once the order was closed (OrderClosedAt
	// plus protection.after_close).
	ExpiresAt time.Time
	// OrderClosedAt is when the order was closed, or zero while it is not.
	OrderClosedAt time.Time
	// ttlEnd is CreatedAt plus the TTL, where after_sale puts ExpiresAt
	// back.
	ttlEnd time.Time
	// ReleasedAt is when the binding was released, or zero.
	ReleasedAt time.Time
	// Status is active, released or expired as of when it was read.
	Status string
	// plain is set by Resolve when neither the merchant's own protection
	// nor a block for the consignee applies to the binding (Target.Plain).
	plain bool
}

// Display returns the virtual number as people read it: "17000000001转1234".
func (b *Binding) Display() string { return b.Host + "转" + b.Extension }

// Dial returns the virtual number as phones dial it: "17000000001,1234".
func (b *Binding) Dial() string { return b.Host + "," + b.Extension }

// Target returns the binding as signalling dials it: its identity, owner
// and order for the call's record, the consignee to ring and the ways it
// takes calls.
func (b *Binding) Target() callrec.Target {
	return callrec.Target{BindingID: b.ID, Merchant: b.Merchant, Order: b.Order, Host: b.Host,
		Extension: b.Extension, Consignee: b.Consignee, Calls: b.Calls, Plain: b.plain}
}

// StatusAt returns the binding's status at now.
func (b *Binding) StatusAt(now time.Time) string {
	switch {
	case !b.ReleasedAt.IsZero():
		return StatusReleased
	case !now.Before(b.ExpiresAt):
		return StatusExpired
	}
	return StatusActive
}

// bindingJSON is the merchant-facing JSON form of a Binding.
type bindingJSON struct {
	ID            string  `json:"id"`
	Merchant      string  `json:"merchant"`
	Order         string  `json:"order"`
	Host          string  `json:"host"`
	Extension     string  `json:"extension"`
	Display       string  `json:"display"`
	Dial          string  `json:"dial"`
	OrderStatus   string  `json:"order_status"`
	Calls         string  `json:"calls"`
	CreatedAt     string  `json:"created_at"`
	ExpiresAt     string  `json:"expires_at"`
	OrderClosedAt *string `json:"order_closed_at"`
	ReleasedAt    *string `json:"released_at"`
	Status        string  `json:"status"`
}

func (b *Binding) toJSON() bindingJSON {
	return bindingJSON{
		ID: b.ID, Merchant: b.Merchant, Order: b.Order, Host: b.Host, Extension: b.Extension,
		Display: b.Display(), Dial: b.Dial(), OrderStatus: b.OrderStatus, Calls: string(b.Calls),
		CreatedAt: callrec.FormatTime(b.CreatedAt), ExpiresAt: callrec.FormatTime(b.ExpiresAt),
		OrderClosedAt: timePtr(b.OrderClosedAt), ReleasedAt: timePtr(b.ReleasedAt), Status: b.Status,
	}
}

// MarshalJSON writes the merchant-facing form: no consignee.
func (b Binding) MarshalJSON() ([]byte, error) { return json.Marshal(b.toJSON()) }

// AdminView is a binding with its consignee, for operator-only output.
type AdminView struct{ Binding }

// MarshalJSON writes the binding with a "consignee" field.
func (a AdminView) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		bindingJSON
		Consignee string `json:"consignee"`
	}{a.toJSON(), a.Consignee})
}

func timePtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := callrec.FormatTime(t)
	return &s
}

// CreateRequest asks for a binding.
type CreateRequest struct {
	// Merchant owns the order.
	Merchant string
	// Order is the merchant's order identifier.
	Order string
	// Consignee is B as typed: 11-digit mobile or E.164.
	Consignee string
	// OrderStatus must be shipped, delivered or after_sale.
	OrderStatus string
	// TTL overrides the policy's lifetime when not zero; the lifetime
	// must lie within [MinTTL, MaxTTL].
	TTL time.Duration
	// Calls makes the binding one-way: to_consignee or from_consignee;
	// "" or both takes calls both ways.
	Calls string
}

// CreateBinding validates req and allocates a virtual number for it: a host
// number from the pool and a random free extension at Hamming distance two
// or more from every extension in use or in quarantine on that host. It
// returns ErrNotShipped, ErrInvalid, ErrNotFound (merchant), ErrExists
// (an active binding for the order) or ErrPoolExhausted, and then stores
// nothing.
func (s *Store) CreateBinding(ctx context.Context, req CreateRequest, now time.Time) (*Binding, error) {
	b, err := s.prepare(req, now)
	if err != nil {
		return nil, err
	}
	if err := s.allocTx(ctx, func(tx *txn) error { return s.insertBinding(ctx, tx, b) }); err != nil {
		if isSentinel(err) {
			return nil, err
		}
		return nil, fmt.Errorf("create binding: %w", err)
	}
	return b, nil
}

// prepare validates req and returns the binding to insert, without host
// and extension.
func (s *Store) prepare(req CreateRequest, now time.Time) (*Binding, error) {
	if err := checkOrderStatus(req.OrderStatus); err != nil {
		return nil, err
	}
	if err := validMerchantID(req.Merchant); err != nil {
		return nil, err
	}
	if err := validOrder(req.Order); err != nil {
		return nil, err
	}
	consignee, err := NormaliseConsignee(req.Consignee)
	if err != nil {
		return nil, err
	}
	calls, err := ParseCalls(req.Calls)
	if err != nil {
		return nil, err
	}
	ttl := s.policy.TTL
	if req.TTL != 0 {
		ttl = req.TTL
	}
	if err := ValidTTL(ttl); err != nil {
		return nil, err
	}
	id, err := newID("b_")
	if err != nil {
		return nil, err
	}
	now = now.UTC()
	return &Binding{
		ID: id, Merchant: req.Merchant, Order: req.Order, Consignee: consignee, OrderStatus: req.OrderStatus,
		Calls: calls, CreatedAt: now, ExpiresAt: now.Add(ttl), ttlEnd: now.Add(ttl), Status: StatusActive,
	}, nil
}

// ValidTTL reports ErrInvalid unless ttl lies within [MinTTL, MaxTTL].
// Where the operator typed the lifetime, ParseTTL reads it and says what
// was typed when it is out of range.
func ValidTTL(ttl time.Duration) error {
	return validTTL(ttl, config.FormatDuration(ttl))
}

// validTTL is ValidTTL naming the lifetime as shown.
func validTTL(ttl time.Duration, shown string) error {
	if ttl < MinTTL || ttl > MaxTTL {
		return fmt.Errorf("%w ttl %s: must lie between 1h and 8760h (365 days)", ErrInvalid, shown)
	}
	return nil
}

// ParseTTL reads a binding's lifetime as an operator or a client wrote it
// (--ttl, the API's "ttl"): a duration with a unit such as 720h, within
// [MinTTL, MaxTTL]. An empty string is 0, the policy's lifetime. Its
// errors quote s as written ("ttl 9000h: ..."), not as Go prints it.
func ParseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if last := s[len(s)-1]; err != nil || ('0' <= last && last <= '9') {
		// A bare number parses as nothing ("720" is refused by Go) or, for
		// "0", as no time at all: either way the unit is what is missing.
		return 0, fmt.Errorf("%w ttl %q: want a duration with a unit between 1h and 8760h, such as 720h", ErrInvalid, s)
	}
	return d, validTTL(d, s)
}

// allocTx runs fn, which allocates (X, E), in a write transaction that
// first takes the allocation lock: on PostgreSQL, where several nodes
// write at once, creates are serialised across all of them, and each sees
// the bindings the one before it committed. The lock comes before any
// other statement, so a transaction never holds a row while it waits for
// it (no deadlock with a create of the same order elsewhere).
func (s *Store) allocTx(ctx context.Context, fn func(*txn) error) error {
	return s.tx(ctx, func(tx *txn) error {
		if err := tx.dialect.lock(ctx, tx, allocLock); err != nil {
			return err
		}
		return fn(tx)
	})
}

// insertBinding checks the merchant and the one-active-binding-per-order
// rule, allocates (X, E) and inserts b, all inside tx.
func (s *Store) insertBinding(ctx context.Context, tx *txn, b *Binding) error {
	now := b.CreatedAt
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM merchants WHERE id = ?`, b.Merchant).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("merchant %s: %w", b.Merchant, ErrNotFound)
	}
	if err := checkNotHost(ctx, tx, b.Consignee); err != nil {
		return err
	}
	// Bindings of this order that have ended free the order for a new one.
	if _, err := tx.ExecContext(ctx, `UPDATE bindings SET closed = 1
		WHERE merchant = ? AND order_id = ? AND closed = 0 AND end_at <= ?`,
		b.Merchant, b.Order, now.UnixNano()); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bindings WHERE merchant = ? AND order_id = ? AND closed = 0`,
		b.Merchant, b.Order).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("active binding for order %s: %w", b.Order, ErrExists)
	}
	host, ext, err := s.allocate(ctx, tx, now)
	if err != nil {
		return err
	}
	b.Host, b.Extension = host, ext
	_, err = tx.ExecContext(ctx, `INSERT INTO bindings (id, merchant, order_id, host, extension, consignee,
		order_status, calls, created_at, expires_at, ttl_end, end_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.ID, b.Merchant, b.Order, b.Host, b.Extension, b.Consignee, b.OrderStatus, string(b.Calls),
		b.CreatedAt.UnixNano(), b.ExpiresAt.UnixNano(), b.ttlEnd.UnixNano(), b.ExpiresAt.UnixNano())
	if isUnique(err) {
		return fmt.Errorf("binding for order %s: %w", b.Order, ErrExists)
	}
	return err
}

func isSentinel(err error) bool {
	for _, e := range []error{ErrNotFound, ErrExists, ErrInvalid, ErrNotShipped, ErrPoolExhausted, ErrEnded, ErrCDRFinished,
		ErrInUse, ErrTransition, protection.ErrInvalid, protection.ErrLooser, protection.ErrBadClip} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

const bindingCols = `id, merchant, order_id, host, extension, consignee, order_status, calls, created_at, expires_at,
	ttl_end, order_closed_at, released_at`

type scanner interface{ Scan(...any) error }

func scanBinding(r scanner, now time.Time) (*Binding, error) {
	var b Binding
	var created, expires, ttlEnd int64
	var closed, released sql.NullInt64
	var calls string
	if err := r.Scan(&b.ID, &b.Merchant, &b.Order, &b.Host, &b.Extension, &b.Consignee, &b.OrderStatus, &calls,
		&created, &expires, &ttlEnd, &closed, &released); err != nil {
		return nil, err
	}
	b.Calls = callrec.Calls(calls)
	b.CreatedAt = time.Unix(0, created).UTC()
	b.ExpiresAt = time.Unix(0, expires).UTC()
	b.ttlEnd = time.Unix(0, ttlEnd).UTC()
	b.OrderClosedAt = fromNS(closed)
	b.ReleasedAt = fromNS(released)
	b.Status = b.StatusAt(now)
	return &b, nil
}

// GetBinding returns a binding by id, or ErrNotFound.
func (s *Store) GetBinding(ctx context.Context, id string) (*Binding, error) {
	b, err := scanBinding(s.db.QueryRowContext(ctx, `SELECT `+bindingCols+` FROM bindings WHERE id = ?`, id), s.Now())
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("binding %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get binding: %w", err)
	}
	return b, nil
}

// knownMerchant returns ErrNotFound when merchant is not empty and names
// no merchant.
func (s *Store) knownMerchant(ctx context.Context, merchant string) error {
	if merchant == "" {
		return nil
	}
	_, err := s.Merchant(ctx, merchant)
	return err
}

// resolveQuery is Resolve's lookup of the one not retired row of (X, E),
// an equality on the bindings_live_slot index, with whether consignee
// protection has anything of its own for the call (a primary-key probe of
// merchant_protection, whose row of zero values is no protection, and an
// index probe of blocks): a binding whose merchant has no protection of
// its own and whose consignee blocked no one is plain (Target.Plain), and under a platform policy that counts
// nothing its calls need no second read before they ring.
const resolveQuery = `SELECT ` + bindingCols + `,
	NOT EXISTS (SELECT 1 FROM merchant_protection p WHERE p.merchant = bindings.merchant
		AND (p.quiet_hours <> '' OR p.calls_per_day <> 0 OR p.calls_per_binding <> 0 OR p.announce <> ''
			OR p.record <> 0))
		AND NOT EXISTS (SELECT 1 FROM blocks k WHERE k.consignee = bindings.consignee)
	FROM bindings WHERE host = ? AND extension = ? AND retired = 0`

// scanPlus scans a row of bindingCols followed by more columns, into
// scanBinding's targets then extra.
type scanPlus struct {
	scanner
	extra []any
}

func (s scanPlus) Scan(dest ...any) error { return s.scanner.Scan(append(dest, s.extra...)...) }

// Resolve finds the binding a caller reaches by dialling x then ext. The
// binding must be active at now and, when merchant is non-empty, belong to
// that merchant. A wrong, unknown or foreign extension is ErrNoBinding; an
// extension whose binding ended within the quarantine is ErrExpired.
func (s *Store) Resolve(ctx context.Context, x, ext, merchant string, now time.Time) (*Binding, error) {
	host, err := NormaliseHost(x)
	if err != nil || !digits.Only(ext) {
		return nil, ErrNoBinding
	}
	// At most one row per (host, extension) is not retired (unique index);
	// retirement is lazy, so the quarantine is checked here again.
	var plain bool
	b, err := scanBinding(scanPlus{s.db.QueryRowContext(ctx, resolveQuery, host, ext), []any{&plain}}, now)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoBinding
	}
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	if merchant != "" && b.Merchant != merchant {
		return nil, ErrNoBinding
	}
	b.plain = plain && b.Calls.Allows(callrec.DirectionToConsignee)
	if b.Status == StatusActive {
		return b, nil
	}
	if now.Before(b.endAt().Add(s.policy.Quarantine)) {
		return nil, ErrExpired
	}
	return nil, ErrNoBinding
}

// endAt is when the binding stopped (or will stop) being active.
func (b *Binding) endAt() time.Time {
	if !b.ReleasedAt.IsZero() && b.ReleasedAt.Before(b.ExpiresAt) {
		return b.ReleasedAt
	}
	return b.ExpiresAt
}

// Release ends an active binding at now. Calls in progress keep their
// binding; new calls to it get the expired prompt during the quarantine.
// It returns ErrNotFound, or ErrEnded when the binding already ended.
func (s *Store) Release(ctx context.Context, id string, now time.Time) (*Binding, error) {
	if err := s.tx(ctx, func(tx *txn) error { return s.release(ctx, tx, id, now) }); err != nil {
		if isSentinel(err) {
			return nil, err
		}
		return nil, fmt.Errorf("release: %w", err)
	}
	return s.GetBinding(ctx, id)
}

// release ends binding id at now inside tx, and reports its end
// (binding.ended) in the same transaction: the end is marked reported, so
// that the sweep of ended bindings (ReportEndedBindings) does not report
// it again.
func (s *Store) release(ctx context.Context, tx *txn, id string, now time.Time) error {
	t := now.UnixNano()
	var merchant string
	end := bindingEnd{Binding: id, Reason: EndReleased, EndedAt: callrec.FormatTime(now)}
	err := tx.QueryRowContext(ctx, `UPDATE bindings SET released_at = ?, end_at = ?, closed = 1, end_reported = 1
		WHERE id = ? AND released_at IS NULL AND end_at > ? RETURNING merchant, order_id, host, extension`, t, t, id, t).
		Scan(&merchant, &end.Order, &end.Host, &end.Extension)
	if err == nil {
		_, err = s.recordEvent(ctx, tx, NewEvent{Type: EventBindingEnded, Merchant: merchant, At: now, Data: end})
		return err
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	var c int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bindings WHERE id = ?`, id).Scan(&c); err != nil {
		return err
	}
	if c == 0 {
		return fmt.Errorf("binding %s: %w", id, ErrNotFound)
	}
	return fmt.Errorf("binding %s: %w", id, ErrEnded)
}

// Renew gives the order of binding id a new binding with a new (X, E) and
// the given TTL (the policy's when zero), releasing the old one if it is
// still active; both happen in one transaction. An expired binding is not
// revived: its order gets a fresh virtual number.
func (s *Store) Renew(ctx context.Context, id string, ttl time.Duration, now time.Time) (*Binding, error) {
	old, err := s.GetBinding(ctx, id)
	if err != nil {
		return nil, err
	}
	b, err := s.prepare(CreateRequest{
		Merchant: old.Merchant, Order: old.Order, Consignee: old.Consignee,
		OrderStatus: old.OrderStatus, TTL: ttl, Calls: string(old.Calls),
	}, now)
	if err != nil {
		return nil, err
	}
	err = s.allocTx(ctx, func(tx *txn) error {
		if err := s.release(ctx, tx, id, b.CreatedAt); err != nil && !errors.Is(err, ErrEnded) {
			return err
		}
		return s.insertBinding(ctx, tx, b)
	})
	if err != nil {
		if isSentinel(err) {
			return nil, err
		}
		return nil, fmt.Errorf("renew: %w", err)
	}
	return b, nil
}

// newID returns prefix and 16 random hex digits.
func newID(prefix string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}
