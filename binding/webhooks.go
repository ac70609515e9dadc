package binding

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/vnum/vnum/callrec"
)

// The bounds of a webhook's secret and URL.
const (
	// MinWebhookSecret is the shortest secret a webhook may have: it signs
	// every event, and a short one can be guessed from the signatures.
	MinWebhookSecret = 16
	// maxWebhookSecret and maxWebhookURL keep a typo's paste from growing
	// the store.
	maxWebhookSecret = 256
	maxWebhookURL    = 2048
)

// Webhook is a merchant's endpoint for call events. Its JSON form shows
// the secret masked.
type Webhook struct {
	// Merchant owns the endpoint.
	Merchant string
	// URL is where events are posted (http or https).
	URL string
	// Secret signs each delivery; it is never shown whole again.
	Secret string
	// CreatedAt and UpdatedAt are when it was first set and last changed.
	CreatedAt, UpdatedAt time.Time
}

// MaskedSecret is the secret as it is shown once set: its last four
// characters, the rest hidden, so that an operator can tell which one it
// is without being able to sign with it.
func (w Webhook) MaskedSecret() string {
	r := []rune(w.Secret)
	if len(r) < MinWebhookSecret {
		return "****"
	}
	return "****" + string(r[len(r)-4:])
}

// MarshalJSON writes merchant, url, the masked secret and the times.
func (w Webhook) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Merchant  string `json:"merchant"`
		URL       string `json:"url"`
		Secret    string `json:"secret"`
		CreatedAt string `json:"created_at"`
		UpdatedAt string `json:"updated_at"`
	}{w.Merchant, w.URL, w.MaskedSecret(), callrec.FormatTime(w.CreatedAt), callrec.FormatTime(w.UpdatedAt)})
}

// CheckWebhook checks a webhook's URL and secret as SetWebhook does,
// without the store: an absolute http or https URL with a host and no
// user name or password in it (the secret is what authenticates vnum),
// and a secret of MinWebhookSecret to 256 characters without control
// characters. Whether the host's addresses may be reached is the delivery
// side's rule (package events), checked before this is called.
func CheckWebhook(rawURL, secret string) error {
	if len(rawURL) > maxWebhookURL {
		return fmt.Errorf("%w webhook url: longer than %d characters", ErrInvalid, maxWebhookURL)
	}
	u, err := url.Parse(rawURL)
	switch {
	case err != nil || strings.ContainsFunc(rawURL, unicode.IsSpace):
		return fmt.Errorf("%w webhook url %q: want http:// or https:// and a host", ErrInvalid, rawURL)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%w webhook url %q: want http:// or https://", ErrInvalid, rawURL)
	case u.Hostname() == "":
		return fmt.Errorf("%w webhook url %q: no host", ErrInvalid, rawURL)
	case u.User != nil:
		return fmt.Errorf("%w webhook url: no user name or password in it; the secret authenticates vnum", ErrInvalid)
	case u.Fragment != "":
		return fmt.Errorf("%w webhook url %q: no #fragment", ErrInvalid, rawURL)
	}
	n := len([]rune(secret))
	switch {
	case n < MinWebhookSecret:
		return fmt.Errorf("%w webhook secret: %d characters, want at least %d", ErrInvalid, n, MinWebhookSecret)
	case n > maxWebhookSecret:
		return fmt.Errorf("%w webhook secret: %d characters, want at most %d", ErrInvalid, n, maxWebhookSecret)
	case strings.ContainsFunc(secret, unicode.IsControl):
		return fmt.Errorf("%w webhook secret: no control characters", ErrInvalid)
	}
	return nil
}

// SetWebhook registers or replaces merchant's endpoint (CheckWebhook's
// rules). Events are written from now on; events of the past are not
// (none were kept without an endpoint). Pending events go to the new URL,
// signed with the new secret. It returns ErrNotFound for an unknown
// merchant.
func (s *Store) SetWebhook(ctx context.Context, merchant, rawURL, secret string) (Webhook, error) {
	if err := CheckWebhook(rawURL, secret); err != nil {
		return Webhook{}, err
	}
	if merchant == "" {
		return Webhook{}, fmt.Errorf("%w merchant: none given", ErrInvalid)
	}
	if err := s.knownMerchant(ctx, merchant); err != nil {
		return Webhook{}, err
	}
	now := s.Now().UnixNano()
	_, err := s.db.ExecContext(ctx, `INSERT INTO webhooks (merchant, url, secret, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (merchant) DO UPDATE SET url = excluded.url, secret = excluded.secret, updated_at = excluded.updated_at`,
		merchant, rawURL, secret, now, now)
	if err != nil {
		return Webhook{}, fmt.Errorf("set webhook: %w", err)
	}
	return s.Webhook(ctx, merchant)
}

// Webhook returns merchant's endpoint, or ErrNotFound when the merchant
// is unknown or has none.
func (s *Store) Webhook(ctx context.Context, merchant string) (Webhook, error) {
	w := Webhook{Merchant: merchant}
	var created, updated int64
	err := s.db.QueryRowContext(ctx, `SELECT url, secret, created_at, updated_at FROM webhooks WHERE merchant = ?`, merchant).
		Scan(&w.URL, &w.Secret, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		if err := s.knownMerchant(ctx, merchant); err != nil {
			return Webhook{}, err
		}
		return Webhook{}, fmt.Errorf("webhook of merchant %s: %w", merchant, ErrNotFound)
	}
	if err != nil {
		return Webhook{}, fmt.Errorf("get webhook: %w", err)
	}
	w.CreatedAt, w.UpdatedAt = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return w, nil
}

// RemoveWebhook removes merchant's endpoint: no more events are written
// for it, and its pending events are failed at once ("webhook removed"),
// kept and listed; once an endpoint is registered again they can be
// retried by hand. It returns ErrNotFound when the merchant is unknown or
// has no endpoint.
func (s *Store) RemoveWebhook(ctx context.Context, merchant string) error {
	err := s.tx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhooks WHERE merchant = ?`, merchant)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			if err := s.knownMerchant(ctx, merchant); err != nil {
				return err
			}
			return fmt.Errorf("webhook of merchant %s: %w", merchant, ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, `UPDATE events SET status = 'failed', next_at = ?, claim = NULL, claimed_until = 0,
			last_error = 'webhook removed' WHERE merchant = ? AND status = 'pending'`, nextNever, merchant)
		return err
	})
	if err != nil && !isSentinel(err) {
		return fmt.Errorf("remove webhook: %w", err)
	}
	return err
}
