package binding

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vnum/vnum/callrec"
)

// A block is (caller, consignee): the caller may no longer ring the
// consignee through any binding to them, now or later, until an operator
// removes it. The caller is a merchant with all its accounts, or one PSTN
// number. A block is made through a binding, by the consignee's keys or
// by an operator, and is shown by that binding and its merchant: never by
// the consignee's number, which the store keeps to match calls.

// Who made a block.
const (
	// BlockByConsignee is a block the consignee made with their keys.
	BlockByConsignee = "consignee"
	// BlockByOperator is a block an operator made (CLI or API).
	BlockByOperator = "operator"
)

// The kinds of caller a block holds, as the caps count callers too.
const (
	callerMerchant = "merchant"
	callerNumber   = "number"
)

// Block is one block as operators list it: without the consignee.
type Block struct {
	// ID is the block's identifier, "k_" and 16 hex digits.
	ID string
	// Binding is the binding it was made through.
	Binding string
	// Merchant owns that binding.
	Merchant string
	// Caller is the PSTN number blocked (E.164), or "" when the block is
	// of Merchant with all its accounts.
	Caller string
	// Source is who made it: consignee or operator.
	Source string
	// CreatedAt is when it was made (UTC).
	CreatedAt time.Time
}

// MarshalJSON writes the block's fields by their API names, its time in
// RFC 3339 UTC.
func (b Block) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID        string `json:"id"`
		Binding   string `json:"binding"`
		Merchant  string `json:"merchant"`
		Caller    string `json:"caller"`
		Source    string `json:"source"`
		CreatedAt string `json:"created_at"`
	}{b.ID, b.Binding, b.Merchant, b.Caller, b.Source, callrec.FormatTime(b.CreatedAt)})
}

// blockCols are a Block's columns as scanBlock reads them.
const blockCols = `id, binding_id, merchant, caller_kind, caller, source, created_at`

func scanBlock(r scanner) (Block, error) {
	var b Block
	var kind string
	var created int64
	if err := r.Scan(&b.ID, &b.Binding, &b.Merchant, &kind, &b.Caller, &b.Source, &created); err != nil {
		return Block{}, err
	}
	if kind == callerMerchant {
		b.Caller = ""
	}
	b.CreatedAt = time.Unix(0, created).UTC()
	return b, nil
}

// AddBlock is an operator's block made through binding id: of the PSTN
// number caller (any form NormaliseConsignee takes) or, when caller is
// "", of the binding's merchant with all its accounts. It returns
// ErrNotFound for an unknown binding, ErrInvalid for a caller that is not
// a phone number, and ErrExists, naming the block, when that caller is
// already blocked for the binding's consignee; then nothing is stored.
func (s *Store) AddBlock(ctx context.Context, id, caller string, now time.Time) (Block, error) {
	kind := callerMerchant
	if caller != "" {
		n, err := NormaliseConsignee(caller)
		if err != nil {
			return Block{}, fmt.Errorf("%w caller: not a phone number; want the PSTN caller's number "+
				"(a mobile, a fixed line with its area code, or E.164), or no caller to block the binding's merchant", ErrInvalid)
		}
		kind, caller = callerNumber, n
	}
	b, _, err := s.block(ctx, id, "", kind, caller, BlockByOperator, now)
	return b, err
}

// BlockFromConsignee is the block the consignee makes with their keys
// during a call through binding id: of the caller of that call, a
// merchant's account (kind callrec.CallerAccount: the block is of its
// merchant, all its accounts) or a PSTN number (callrec.CallerNumber, in
// E.164). call is the CDR id of that call: the consignee.blocked event is
// one of the call's events, so that the merchant can tie the block to the
// call ("" for none). A caller blocked already keeps its block, which is
// returned, with created false.
func (s *Store) BlockFromConsignee(ctx context.Context, id, call string, kind callrec.CallerKind, caller string,
	now time.Time) (b Block, created bool, err error) {
	switch kind {
	case callrec.CallerAccount:
		return s.block(ctx, id, call, callerMerchant, "", BlockByConsignee, now)
	case callrec.CallerNumber:
		n, err := NormaliseConsignee(caller)
		if err != nil {
			return Block{}, false, fmt.Errorf("%w caller: not a phone number a block can hold", ErrInvalid)
		}
		return s.block(ctx, id, call, callerNumber, n, BlockByConsignee, now)
	}
	return Block{}, false, fmt.Errorf("%w caller kind %q: a block holds a merchant's account or a PSTN number", ErrInvalid, kind)
}

// block stores a block of (kind, caller) for the consignee of binding id;
// a merchant block's caller is the binding's merchant. Its event is one
// of call's events when call is a CDR id. An operator's block that exists
// already is ErrExists; a consignee's returns the one there is.
func (s *Store) block(ctx context.Context, id, call, kind, caller, source string, now time.Time) (Block, bool, error) {
	var (
		b       Block
		created bool
	)
	err := s.tx(ctx, func(tx *txn) error {
		var merchant, consignee, order string
		err := tx.QueryRowContext(ctx, `SELECT merchant, consignee, order_id FROM bindings WHERE id = ?`, id).
			Scan(&merchant, &consignee, &order)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("binding %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if kind == callerMerchant {
			caller = merchant
		}
		bid, err := newID("k_")
		if err != nil {
			return err
		}
		b = Block{ID: bid, Binding: id, Merchant: merchant, Source: source, CreatedAt: now.UTC()}
		// ON CONFLICT DO NOTHING rather than a unique violation, which
		// would end a PostgreSQL transaction before the existing block
		// could be read.
		res, err := tx.ExecContext(ctx, `INSERT INTO blocks (id, consignee, caller_kind, caller, merchant, binding_id,
			source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			b.ID, consignee, kind, caller, merchant, id, source, b.CreatedAt.UnixNano())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err != nil {
				return err
			}
			old, err := scanBlock(tx.QueryRowContext(ctx, `SELECT `+blockCols+` FROM blocks
				WHERE consignee = ? AND caller_kind = ? AND caller = ?`, consignee, kind, caller))
			if err != nil {
				return err
			}
			if source == BlockByConsignee {
				b = old
				return nil
			}
			return fmt.Errorf("caller already blocked for the consignee of binding %s (block %s): %w", id, old.ID, ErrExists)
		}
		created = true
		ev := Blocked{Block: b.ID, Binding: id, Order: order, By: source}
		if kind == callerNumber {
			b.Caller = caller
			ev.Caller = caller
		}
		// The merchant hears of the block in the block's own transaction
		// (consignee.blocked; never the consignee's number).
		_, err = s.recordEvent(ctx, tx, ev.Event(merchant, call, now))
		return err
	})
	if err != nil {
		if isSentinel(err) {
			return Block{}, false, err
		}
		return Block{}, false, fmt.Errorf("block: %w", err)
	}
	return b, created, nil
}

// Blocks lists the blocks made through merchant's bindings ("" for
// every merchant), oldest first; an unknown merchant is ErrNotFound.
func (s *Store) Blocks(ctx context.Context, merchant string) ([]Block, error) {
	if err := s.knownMerchant(ctx, merchant); err != nil {
		return nil, err
	}
	q := `SELECT ` + blockCols + ` FROM blocks`
	var args []any
	if merchant != "" {
		q += ` WHERE merchant = ?`
		args = append(args, merchant)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	defer rows.Close()
	var out []Block
	for rows.Next() {
		b, err := scanBlock(rows)
		if err != nil {
			return nil, fmt.Errorf("list blocks: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	return out, nil
}

// GetBlock returns one block, or ErrNotFound.
func (s *Store) GetBlock(ctx context.Context, id string) (Block, error) {
	b, err := scanBlock(s.db.QueryRowContext(ctx, `SELECT `+blockCols+` FROM blocks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Block{}, fmt.Errorf("block %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Block{}, fmt.Errorf("get block: %w", err)
	}
	return b, nil
}

// RemoveBlock lifts block id: the caller may ring the consignee again.
// An unknown block is ErrNotFound.
func (s *Store) RemoveBlock(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM blocks WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("remove block: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("remove block: %w", err)
	} else if n == 0 {
		return fmt.Errorf("block %s: %w", id, ErrNotFound)
	}
	return nil
}
