package binding

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/vnum/vnum/callrec"
)

// Merchant is a tenant.
type Merchant struct {
	// ID is the merchant's identifier.
	ID string `json:"id"`
	// Name is the display name.
	Name string `json:"name"`
	// CreatedAt is when the merchant was added.
	CreatedAt time.Time `json:"created_at"`
}

// Number is a host number X of the pool.
type Number struct {
	// Host is X in national form (5 to 15 digits).
	Host string `json:"host"`
	// Active counts the active bindings on X.
	Active int `json:"active"`
	// CreatedAt is when X joined the pool.
	CreatedAt time.Time `json:"created_at"`
}

// MarshalJSON writes the merchant with its time in RFC 3339 UTC to the
// second, like every other time vnum prints.
func (m Merchant) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		CreatedAt string `json:"created_at"`
	}{m.ID, m.Name, callrec.FormatTime(m.CreatedAt)})
}

// MarshalJSON writes the pool entry with its time in RFC 3339 UTC to the
// second, like every other time vnum prints.
func (n Number) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Host      string `json:"host"`
		Active    int    `json:"active"`
		CreatedAt string `json:"created_at"`
	}{n.Host, n.Active, callrec.FormatTime(n.CreatedAt)})
}

// HA1 returns hex(H(user:realm:password)) for the digest algorithm "MD5"
// or "SHA-256"; it returns "" for any other algorithm.
func HA1(algorithm, user, realm, password string) string {
	in := []byte(user + ":" + realm + ":" + password)
	switch algorithm {
	case "MD5":
		sum := md5.Sum(in)
		return hex.EncodeToString(sum[:])
	case "SHA-256":
		sum := sha256.Sum256(in)
		return hex.EncodeToString(sum[:])
	}
	return ""
}

// AddMerchant adds a merchant. It returns ErrInvalid for a malformed id and
// ErrExists when the id is taken.
func (s *Store) AddMerchant(ctx context.Context, id, name string) error {
	if err := validMerchantID(id); err != nil {
		return err
	}
	if name == "" {
		name = id
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO merchants (id, name, created_at) VALUES (?, ?, ?)`,
		id, name, s.Now().UnixNano())
	if isUnique(err) {
		return fmt.Errorf("merchant %s: %w", id, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("add merchant: %w", err)
	}
	return nil
}

// Merchant returns one merchant or ErrNotFound.
func (s *Store) Merchant(ctx context.Context, id string) (Merchant, error) {
	var m Merchant
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, created_at FROM merchants WHERE id = ?`, id).
		Scan(&m.ID, &m.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Merchant{}, fmt.Errorf("merchant %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Merchant{}, fmt.Errorf("merchant: %w", err)
	}
	m.CreatedAt = time.Unix(0, created).UTC()
	return m, nil
}

// AddAccount adds a SIP login for a merchant, storing only the digest HA1
// values for Realm. It returns ErrNotFound for an unknown merchant and
// ErrExists when the user name is taken, by this merchant or another (SIP
// digest user names are global); the error names the merchant that has it.
func (s *Store) AddAccount(ctx context.Context, merchant, user, password string) error {
	if !userRe.MatchString(user) {
		return fmt.Errorf("%w account user %q: want 1-64 of A-Z a-z 0-9 _ . + -", ErrInvalid, user)
	}
	if err := validPassword(password); err != nil {
		return err
	}
	if _, err := s.Merchant(ctx, merchant); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO accounts ("user", merchant, ha1_md5, ha1_sha256, created_at) VALUES (?, ?, ?, ?, ?)`,
		user, merchant, HA1("MD5", user, Realm, password), HA1("SHA-256", user, Realm, password), s.Now().UnixNano())
	if isUnique(err) {
		return s.accountTaken(ctx, merchant, user)
	}
	if err != nil {
		return fmt.Errorf("add account: %w", err)
	}
	return nil
}

// accountQuery is Account's lookup, run by every authenticated request.
const accountQuery = `SELECT "user", merchant, ha1_md5, ha1_sha256 FROM accounts WHERE "user" = ?`

// Account returns a SIP login by user name, or ErrNotFound. The password
// itself is never stored, only its digests.
func (s *Store) Account(ctx context.Context, user string) (callrec.Account, error) {
	var a callrec.Account
	err := s.db.QueryRowContext(ctx, accountQuery, user).Scan(&a.User, &a.Merchant, &a.HA1MD5, &a.HA1SHA256)
	if errors.Is(err, sql.ErrNoRows) {
		return callrec.Account{}, fmt.Errorf("account %s: %w", user, ErrNotFound)
	}
	if err != nil {
		return callrec.Account{}, fmt.Errorf("account: %w", err)
	}
	return a, nil
}

// AddNumbers adds host numbers to the pool, all or none. Each X may carry
// a +86 or 86 prefix and is stored without it (NormaliseHost). A number already in the
// pool (or given twice) is ErrExists. A number removed from the pool
// (RemoveNumber) comes back: its row, which its old bindings refer to, is
// kept and put back in the pool.
func (s *Store) AddNumbers(ctx context.Context, xs ...string) error {
	if len(xs) == 0 {
		return fmt.Errorf("%w: no numbers given", ErrInvalid)
	}
	hosts := make([]string, 0, len(xs))
	for _, x := range xs {
		h, err := NormaliseHost(x)
		if err != nil {
			return err
		}
		hosts = append(hosts, h)
	}
	now := s.Now().UnixNano()
	return s.tx(ctx, func(tx *txn) error {
		for _, h := range hosts {
			check, err := rand.Int(rand.Reader, big.NewInt(10))
			if err != nil {
				return fmt.Errorf("add numbers: %w", err)
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO numbers (host, ext_check, created_at) VALUES (?, ?, ?)
				ON CONFLICT (host) DO UPDATE SET removed_at = NULL, created_at = excluded.created_at
				WHERE numbers.removed_at IS NOT NULL`,
				h, check.Int64(), now)
			if err != nil {
				return fmt.Errorf("add numbers: %w", err)
			}
			// A row already in the pool is left alone: no row affected.
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("add numbers: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("number %s: %w", h, ErrExists)
			}
		}
		return nil
	})
}

// ListNumbers returns the pool with the count of active bindings per X.
func (s *Store) ListNumbers(ctx context.Context) ([]Number, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT n.host, n.created_at,
		(SELECT COUNT(*) FROM bindings b WHERE b.host = n.host AND b.retired = 0 AND b.end_at > ?)
		FROM numbers n WHERE n.removed_at IS NULL ORDER BY n.host`, s.Now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("list numbers: %w", err)
	}
	defer rows.Close()
	var out []Number
	for rows.Next() {
		var n Number
		var created int64
		if err := rows.Scan(&n.Host, &created, &n.Active); err != nil {
			return nil, fmt.Errorf("list numbers: %w", err)
		}
		n.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, n)
	}
	return out, rows.Err()
}

// isHostQuery is IsHostNumber's lookup, run by every INVITE.
const isHostQuery = `SELECT COUNT(*) FROM numbers WHERE host = ? AND removed_at IS NULL`

// IsHostNumber reports whether x (5 to 15 digits, +86 or 86 prefix allowed) is
// in the pool; a number removed from it is not.
func (s *Store) IsHostNumber(ctx context.Context, x string) (bool, error) {
	h, err := NormaliseHost(x)
	if err != nil {
		return false, nil
	}
	var n int
	if err := s.db.QueryRowContext(ctx, isHostQuery, h).Scan(&n); err != nil {
		return false, fmt.Errorf("is host number: %w", err)
	}
	return n > 0, nil
}
