package binding

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vnum/vnum/protection"
)

// A merchant's own consignee protection, which can only be stricter than
// the platform's, and the clip that names it to the consignee.

// MerchantProtection returns merchant's own protection: the zero Own when
// it set none. An unknown merchant is ErrNotFound.
func (s *Store) MerchantProtection(ctx context.Context, merchant string) (protection.Own, error) {
	if _, err := s.Merchant(ctx, merchant); err != nil {
		return protection.Own{}, err
	}
	own, err := scanOwn(s.db.QueryRowContext(ctx, `SELECT `+ownCols+` FROM merchants m
		LEFT JOIN merchant_protection p ON p.merchant = m.id WHERE m.id = ?`, merchant))
	if err != nil {
		return protection.Own{}, fmt.Errorf("merchant protection: %w", err)
	}
	return own, nil
}

// ownCols are a merchant's own protection, as scanOwn reads it, from a
// LEFT JOIN of merchant_protection (p) that may find no row.
const ownCols = `COALESCE(p.quiet_hours, ''), COALESCE(p.calls_per_day, 0), COALESCE(p.calls_per_binding, 0),
	COALESCE(p.announce, ''), COALESCE(p.record, 0)`

// ownRow is ownCols as scanned, before parsing.
type ownRow struct {
	window, announce string
	perDay, perBind  int
	record           int
}

// targets are the Scan destinations of ownCols.
func (o *ownRow) targets() []any {
	return []any{&o.window, &o.perDay, &o.perBind, &o.announce, &o.record}
}

// own parses the row. A value the store holds but cannot parse (written
// by hand) is an error rather than a protection silently dropped.
func (o *ownRow) own() (protection.Own, error) {
	w, err := protection.ParseWindow(o.window)
	if err != nil {
		return protection.Own{}, err
	}
	a, err := protection.ParseAnnounce(o.announce)
	if err != nil {
		return protection.Own{}, err
	}
	return protection.Own{QuietHours: w, CallsPerDay: o.perDay, CallsPerBinding: o.perBind, Announce: a,
		Record: o.record != 0}, nil
}

// scanOwn reads ownCols.
func scanOwn(r scanner) (protection.Own, error) {
	var o ownRow
	if err := r.Scan(o.targets()...); err != nil {
		return protection.Own{}, err
	}
	return o.own()
}

// SetMerchantProtection replaces merchant's own protection with own,
// which must be no looser than platform in any part: otherwise it
// returns protection.ErrLooser (or protection.ErrInvalid for a value out
// of range) and stores nothing. The zero Own removes the merchant's own
// protection. An unknown merchant is ErrNotFound.
func (s *Store) SetMerchantProtection(ctx context.Context, merchant string, own protection.Own,
	platform protection.Platform) error {
	if err := own.Check(platform); err != nil {
		return err
	}
	if _, err := s.Merchant(ctx, merchant); err != nil {
		return err
	}
	record := 0
	if own.Record {
		record = 1
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO merchant_protection
		(merchant, quiet_hours, calls_per_day, calls_per_binding, announce, record, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (merchant) DO UPDATE SET quiet_hours = excluded.quiet_hours,
			calls_per_day = excluded.calls_per_day, calls_per_binding = excluded.calls_per_binding,
			announce = excluded.announce, record = excluded.record, updated_at = excluded.updated_at`,
		merchant, own.QuietHours.String(), own.CallsPerDay, own.CallsPerBinding, own.Announce.String(), record,
		s.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("set merchant protection: %w", err)
	}
	return nil
}

// SetAnnouncement stores merchant's clip, the WAV file wav, in place of
// any it had: 8 kHz mono, 16-bit PCM, A-law or µ-law, at most
// protection.MaxClip. Any other file is protection.ErrBadClip, saying
// what it is, and nothing is stored. An unknown merchant is ErrNotFound.
func (s *Store) SetAnnouncement(ctx context.Context, merchant string, wav []byte) (protection.Clip, error) {
	clip, err := protection.ParseClip(wav)
	if err != nil {
		return protection.Clip{}, err
	}
	if _, err := s.Merchant(ctx, merchant); err != nil {
		return protection.Clip{}, err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO merchant_clips (merchant, encoding, samples, created_at)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (merchant) DO UPDATE SET encoding = excluded.encoding, samples = excluded.samples,
			created_at = excluded.created_at`,
		merchant, clip.Encoding.String(), clip.Data, s.Now().UnixNano())
	if err != nil {
		return protection.Clip{}, fmt.Errorf("set announcement: %w", err)
	}
	return clip, nil
}

// Announcement returns merchant's clip, and false when it has none.
func (s *Store) Announcement(ctx context.Context, merchant string) (protection.Clip, bool, error) {
	var enc string
	var clip protection.Clip
	err := s.db.QueryRowContext(ctx, `SELECT encoding, samples FROM merchant_clips WHERE merchant = ?`, merchant).
		Scan(&enc, &clip.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return protection.Clip{}, false, nil
	}
	if err != nil {
		return protection.Clip{}, false, fmt.Errorf("announcement: %w", err)
	}
	if clip.Encoding, err = protection.ParseEncoding(enc); err != nil {
		return protection.Clip{}, false, fmt.Errorf("announcement of %s: %w", merchant, err)
	}
	return clip, true, nil
}

// RemoveAnnouncement deletes merchant's clip: the notice says "a
// merchant" again. An unknown merchant, or one without a clip, is
// ErrNotFound.
func (s *Store) RemoveAnnouncement(ctx context.Context, merchant string) error {
	if _, err := s.Merchant(ctx, merchant); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM merchant_clips WHERE merchant = ?`, merchant)
	if err != nil {
		return fmt.Errorf("remove announcement: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("remove announcement: %w", err)
	} else if n == 0 {
		return fmt.Errorf("announcement of merchant %s: %w (it has none)", merchant, ErrNotFound)
	}
	return nil
}

// ProtectionView is a merchant's protection as operators read it: the
// policy in force for its calls (the platform's made stricter by its
// own), which parts its own protection changes, its own as stored and
// the platform's. Its JSON is the API's and the CLI's.
type ProtectionView struct {
	// Merchant is whose protection it is.
	Merchant string
	// Effective is the policy its calls ring under.
	Effective protection.Policy
	// Parts names the parts its own protection makes stricter.
	Parts []string
	// Own is the merchant's own protection.
	Own protection.Own
	// Platform is the platform's.
	Platform protection.Platform
}

// ProtectionView returns merchant's protection under platform. An
// unknown merchant is ErrNotFound.
func (s *Store) ProtectionView(ctx context.Context, merchant string, platform protection.Platform) (ProtectionView, error) {
	own, err := s.MerchantProtection(ctx, merchant)
	if err != nil {
		return ProtectionView{}, err
	}
	return ProtectionView{Merchant: merchant, Effective: protection.Effective(platform, own), Parts: own.Parts(platform),
		Own: own, Platform: platform}, nil
}

// OwnJSON is a merchant's own protection as the API takes and shows it
// (PUT /v1/merchants/{id}/protection): a quiet window ("" for none),
// caps (0 for the platform's), an announce mode ("" for the platform's)
// and whether to record.
type OwnJSON struct {
	QuietHours      string `json:"quiet_hours"`
	CallsPerDay     int    `json:"calls_per_day"`
	CallsPerBinding int    `json:"calls_per_binding"`
	Announce        string `json:"announce"`
	Record          bool   `json:"record"`
}

// Own parses o, refusing a window or a mode that does not parse with
// protection.ErrInvalid.
func (o OwnJSON) Own() (protection.Own, error) {
	w, err := protection.ParseWindow(o.QuietHours)
	if err != nil {
		return protection.Own{}, err
	}
	a, err := protection.ParseAnnounce(o.Announce)
	if err != nil {
		return protection.Own{}, err
	}
	own := protection.Own{QuietHours: w, CallsPerDay: o.CallsPerDay, CallsPerBinding: o.CallsPerBinding, Announce: a,
		Record: o.Record}
	return own, own.Valid()
}

// ownJSON is o as the API writes it.
func ownJSON(o protection.Own) OwnJSON {
	return OwnJSON{QuietHours: o.QuietHours.String(), CallsPerDay: o.CallsPerDay, CallsPerBinding: o.CallsPerBinding,
		Announce: o.Announce.String(), Record: o.Record}
}

// MarshalJSON writes the view: the effective policy's fields at the top,
// then from_merchant, own and platform.
func (v ProtectionView) MarshalJSON() ([]byte, error) {
	windows := make([]string, 0, len(v.Effective.QuietHours))
	for _, w := range v.Effective.QuietHours {
		windows = append(windows, w.String())
	}
	type platformJSON struct {
		QuietHours      string `json:"quiet_hours"`
		CallsPerDay     int    `json:"calls_per_day"`
		CallsPerBinding int    `json:"calls_per_binding"`
		Announce        string `json:"announce"`
	}
	return json.Marshal(struct {
		Merchant        string       `json:"merchant"`
		Timezone        string       `json:"timezone"`
		QuietHours      []string     `json:"quiet_hours"`
		CallsPerDay     int          `json:"calls_per_day"`
		CallsPerBinding int          `json:"calls_per_binding"`
		Announce        string       `json:"announce"`
		Record          bool         `json:"record"`
		FromMerchant    []string     `json:"from_merchant"`
		Own             OwnJSON      `json:"own"`
		Platform        platformJSON `json:"platform"`
	}{
		Merchant: v.Merchant, Timezone: v.Effective.Location.String(), QuietHours: windows,
		CallsPerDay: v.Effective.CallsPerDay, CallsPerBinding: v.Effective.CallsPerBinding,
		Announce: v.Effective.Announce.String(), Record: v.Effective.Record, FromMerchant: nonNilStrings(v.Parts),
		Own: ownJSON(v.Own),
		Platform: platformJSON{QuietHours: v.Platform.QuietHours.String(), CallsPerDay: v.Platform.CallsPerDay,
			CallsPerBinding: v.Platform.CallsPerBinding, Announce: v.Platform.Announce.String()},
	})
}

// nonNilStrings makes an empty list encode as [] rather than null.
func nonNilStrings(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}
