package binding

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vnum/vnum/callrec"
)

// The day-two administration of tenants: listing merchants and their SIP
// logins, changing a login's password, removing a login. What these
// return is operator-facing but still carries no consignee number and no
// password digest: an account is its name, its merchant and its state.

// MerchantSummary is a merchant with counts of what it has, as operators
// list and show merchants.
type MerchantSummary struct {
	Merchant
	// Accounts counts the merchant's SIP logins.
	Accounts int
	// ActiveBindings counts the merchant's bindings active now.
	ActiveBindings int
}

// MarshalJSON writes the summary flat: the merchant's fields and the counts.
func (m MerchantSummary) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID             string `json:"id"`
		Name           string `json:"name"`
		CreatedAt      string `json:"created_at"`
		Accounts       int    `json:"accounts"`
		ActiveBindings int    `json:"active_bindings"`
	}{m.ID, m.Name, callrec.FormatTime(m.CreatedAt), m.Accounts, m.ActiveBindings})
}

// AccountInfo describes a SIP login without its secrets.
type AccountInfo struct {
	// User is the digest user name, unique across all merchants.
	User string
	// Merchant owns the login.
	Merchant string
	// CreatedAt is when the login was added.
	CreatedAt time.Time
	// Registered reports whether the login's softphone is registered now.
	Registered bool
}

// MarshalJSON writes the login with its time in RFC 3339 UTC.
func (a AccountInfo) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		User       string `json:"user"`
		Merchant   string `json:"merchant"`
		CreatedAt  string `json:"created_at"`
		Registered bool   `json:"registered"`
	}{a.User, a.Merchant, callrec.FormatTime(a.CreatedAt), a.Registered})
}

// merchantSummaryQuery reads merchants with their counts; the caller adds
// the WHERE clause.
const merchantSummaryQuery = `SELECT m.id, m.name, m.created_at,
	(SELECT COUNT(*) FROM accounts a WHERE a.merchant = m.id),
	(SELECT COUNT(*) FROM bindings b WHERE b.merchant = m.id AND b.end_at > ?)
	FROM merchants m`

// ListMerchants returns every merchant with its counts, by id (byte
// order, the same on both databases).
func (s *Store) ListMerchants(ctx context.Context) ([]MerchantSummary, error) {
	rows, err := s.db.QueryContext(ctx, merchantSummaryQuery, s.Now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("list merchants: %w", err)
	}
	defer rows.Close()
	var out []MerchantSummary
	for rows.Next() {
		m, err := scanMerchantSummary(rows)
		if err != nil {
			return nil, fmt.Errorf("list merchants: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list merchants: %w", err)
	}
	slices.SortFunc(out, func(a, b MerchantSummary) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// MerchantSummary returns one merchant with its counts, or ErrNotFound.
func (s *Store) MerchantSummary(ctx context.Context, id string) (MerchantSummary, error) {
	m, err := scanMerchantSummary(s.db.QueryRowContext(ctx, merchantSummaryQuery+` WHERE m.id = ?`,
		s.Now().UnixNano(), id))
	if errors.Is(err, sql.ErrNoRows) {
		return MerchantSummary{}, fmt.Errorf("merchant %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return MerchantSummary{}, fmt.Errorf("merchant: %w", err)
	}
	return m, nil
}

func scanMerchantSummary(r scanner) (MerchantSummary, error) {
	var m MerchantSummary
	var created int64
	if err := r.Scan(&m.ID, &m.Name, &created, &m.Accounts, &m.ActiveBindings); err != nil {
		return MerchantSummary{}, err
	}
	m.CreatedAt = time.Unix(0, created).UTC()
	return m, nil
}

// ListAccounts returns the SIP logins of a merchant by user name, without
// their digests. An unknown merchant is ErrNotFound, not an empty list.
func (s *Store) ListAccounts(ctx context.Context, merchant string) ([]AccountInfo, error) {
	if _, err := s.Merchant(ctx, merchant); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT a."user", a.merchant, a.created_at,
		(SELECT COUNT(*) FROM registrations r WHERE r."user" = a."user" AND r.expires_at > ?)
		FROM accounts a WHERE a.merchant = ?`, s.Now().UnixNano(), merchant)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	var out []AccountInfo
	for rows.Next() {
		var a AccountInfo
		var created int64
		var registered int
		if err := rows.Scan(&a.User, &a.Merchant, &created, &registered); err != nil {
			return nil, fmt.Errorf("list accounts: %w", err)
		}
		a.CreatedAt = time.Unix(0, created).UTC()
		a.Registered = registered > 0
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	slices.SortFunc(out, func(a, b AccountInfo) int { return strings.Compare(a.User, b.User) })
	return out, nil
}

// SetPassword replaces the digests of a merchant's SIP login with those
// of password. The next request the login signs is checked against the
// new password (the signalling server reads the login per request), and
// its registration is dropped: whoever registered with the old password,
// the owner or someone who learnt it, no longer receives its calls. It
// returns ErrInvalid for a password under 8 characters and ErrNotFound for
// an unknown merchant or a login the merchant does not have.
func (s *Store) SetPassword(ctx context.Context, merchant, user, password string) error {
	if err := validPassword(password); err != nil {
		return err
	}
	return s.changeAccount(ctx, merchant, user, func(tx *txn) (sql.Result, error) {
		return tx.ExecContext(ctx, `UPDATE accounts SET ha1_md5 = ?, ha1_sha256 = ? WHERE "user" = ? AND merchant = ?`,
			HA1("MD5", user, Realm, password), HA1("SHA-256", user, Realm, password), user, merchant)
	})
}

// RemoveAccount removes a merchant's SIP login and its registration. The
// next request it signs is refused, whatever nonce it answers; calls in
// progress go on. Its call records keep its name. It returns ErrNotFound
// for an unknown merchant or a login the merchant does not have.
func (s *Store) RemoveAccount(ctx context.Context, merchant, user string) error {
	return s.changeAccount(ctx, merchant, user, func(tx *txn) (sql.Result, error) {
		return tx.ExecContext(ctx, `DELETE FROM accounts WHERE "user" = ? AND merchant = ?`, user, merchant)
	})
}

// changeAccount runs change, which touches the one row of (merchant,
// user), and drops the login's registration, in one transaction. When
// change touched no row it says which of the two is unknown.
func (s *Store) changeAccount(ctx context.Context, merchant, user string, change func(*txn) (sql.Result, error)) error {
	err := s.tx(ctx, func(tx *txn) error {
		res, err := change(tx)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return s.missingAccount(ctx, tx, merchant, user)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM registrations WHERE "user" = ?`, user)
		return err
	})
	if err != nil && !isSentinel(err) {
		return fmt.Errorf("account %s: %w", user, err)
	}
	return err
}

// missingAccount says why (merchant, user) names no login: the merchant
// is unknown, or it has no login of that name.
func (s *Store) missingAccount(ctx context.Context, tx *txn, merchant, user string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM merchants WHERE id = ?`, merchant).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("merchant %s: %w", merchant, ErrNotFound)
	}
	return fmt.Errorf("account %s of merchant %s: %w", user, merchant, ErrNotFound)
}

// validPassword refuses a password too short to be a secret.
func validPassword(password string) error {
	if len(password) < 8 {
		return fmt.Errorf("%w password: want at least 8 characters", ErrInvalid)
	}
	return nil
}

// accountTaken says who has the user name an insert found taken: SIP
// digest user names are global, so the merchant that has it may be
// another.
func (s *Store) accountTaken(ctx context.Context, merchant, user string) error {
	var owner string
	err := s.db.QueryRowContext(ctx, `SELECT merchant FROM accounts WHERE "user" = ?`, user).Scan(&owner)
	switch {
	case err != nil:
		// Removed again since: the plain refusal still holds.
		return fmt.Errorf("account %s: %w", user, ErrExists)
	case owner == merchant:
		return fmt.Errorf("account %s: %w for merchant %s", user, ErrExists, merchant)
	}
	return fmt.Errorf("account %s: %w: merchant %s has it, and SIP user names are shared by all merchants; choose another",
		user, ErrExists, owner)
}
