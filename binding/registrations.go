package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vnum/vnum/callrec"
)

// SaveRegistration stores where an account's softphone registered,
// replacing its earlier registration (one per account: a REGISTER renews
// or moves it, RFC 3261 §10.3). The row carries this store's node
// (WithNode) and the store's time. It returns ErrInvalid for a malformed
// user, an empty contact or source, or a zero expiry.
func (s *Store) SaveRegistration(ctx context.Context, r callrec.Registration) error {
	if !userRe.MatchString(r.User) {
		return fmt.Errorf("%w registration user %q", ErrInvalid, r.User)
	}
	if r.Contact == "" || r.Source == "" || r.Expires.IsZero() {
		return fmt.Errorf("%w registration of %s: contact, source and expiry are required", ErrInvalid, r.User)
	}
	// One statement, so that two nodes taking REGISTERs of the same user
	// at once leave one whole row (the later), never a mix.
	_, err := s.db.ExecContext(ctx, `INSERT INTO registrations
		("user", contact, source, transport, expires_at, node, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT ("user") DO UPDATE SET contact = excluded.contact, source = excluded.source,
			transport = excluded.transport, expires_at = excluded.expires_at, node = excluded.node,
			updated_at = excluded.updated_at`,
		r.User, r.Contact, r.Source, r.Transport, r.Expires.UnixNano(), s.node, s.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("save registration: %w", err)
	}
	return nil
}

// DeleteRegistration removes an account's registration (a REGISTER with
// expires 0, RFC 3261 §10.2.2). Deleting one that is not there is not an
// error: the softphone is unregistered either way.
func (s *Store) DeleteRegistration(ctx context.Context, user string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM registrations WHERE "user" = ?`, user); err != nil {
		return fmt.Errorf("delete registration: %w", err)
	}
	return nil
}

// LookupRegistration returns where user's softphone registered, with
// ok=false when it has no registration or its registration expired at or
// before now (an expired row is left for the next REGISTER to replace).
func (s *Store) LookupRegistration(ctx context.Context, user string, now time.Time) (callrec.Registration, bool, error) {
	r := callrec.Registration{User: user}
	var expires int64
	err := s.db.QueryRowContext(ctx, `SELECT contact, source, transport, expires_at, node FROM registrations
		WHERE "user" = ? AND expires_at > ?`, user, now.UnixNano()).
		Scan(&r.Contact, &r.Source, &r.Transport, &expires, &r.Node)
	if errors.Is(err, sql.ErrNoRows) {
		return callrec.Registration{}, false, nil
	}
	if err != nil {
		return callrec.Registration{}, false, fmt.Errorf("lookup registration: %w", err)
	}
	r.Expires = time.Unix(0, expires).UTC()
	return r, true, nil
}
