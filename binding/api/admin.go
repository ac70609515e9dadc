package api

import "net/http"

// The day-two administration of tenants and the pool: listing merchants
// and their SIP logins, changing a login's password, removing a login or
// a host number. What these answer carries no consignee number and no
// password digest.

func (s *server) listMerchants(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	ms, err := s.store.ListMerchants(r.Context())
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, nonNil(ms))
	return nil
}

func (s *server) getMerchant(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	m, err := s.store.MerchantSummary(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, m)
	return nil
}

func (s *server) listAccounts(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	as, err := s.store.ListAccounts(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, nonNil(as))
	return nil
}

// passwordRequest is the body of PUT /v1/merchants/{id}/accounts/{user}/password.
type passwordRequest struct {
	Password string `json:"password"`
}

func (s *server) setPassword(w http.ResponseWriter, r *http.Request) error {
	var req passwordRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	if err := s.store.SetPassword(r.Context(), r.PathValue("id"), r.PathValue("user"), req.Password); err != nil {
		return err
	}
	s.writeNoContent(w)
	return nil
}

func (s *server) removeAccount(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	if err := s.store.RemoveAccount(r.Context(), r.PathValue("id"), r.PathValue("user")); err != nil {
		return err
	}
	s.writeNoContent(w)
	return nil
}

func (s *server) removeNumber(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	if err := s.store.RemoveNumber(r.Context(), r.PathValue("x")); err != nil {
		return err
	}
	s.writeNoContent(w)
	return nil
}

// writeNoContent answers 204: the change is made and there is nothing to
// show (no password, no removed row).
func (s *server) writeNoContent(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNoContent)
}
