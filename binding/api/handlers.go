package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
)

// merchantRequest is the body of POST /v1/merchants.
type merchantRequest struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func (s *server) addMerchant(w http.ResponseWriter, r *http.Request) error {
	var req merchantRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	if err := s.store.AddMerchant(r.Context(), req.ID, req.Name); err != nil {
		return err
	}
	m, err := s.store.Merchant(r.Context(), req.ID)
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusCreated, m)
	return nil
}

// accountRequest is the body of POST /v1/merchants/{id}/accounts.
type accountRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// accountResponse describes a new SIP login; the password is never echoed.
type accountResponse struct {
	User     string `json:"user"`
	Merchant string `json:"merchant"`
	Realm    string `json:"realm"`
}

func (s *server) addAccount(w http.ResponseWriter, r *http.Request) error {
	var req accountRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	merchant := r.PathValue("id")
	if err := s.store.AddAccount(r.Context(), merchant, req.User, req.Password); err != nil {
		return err
	}
	s.writeJSON(w, http.StatusCreated, accountResponse{User: req.User, Merchant: merchant, Realm: binding.Realm})
	return nil
}

// numbersRequest is the body of POST /v1/numbers.
type numbersRequest struct {
	Numbers []string `json:"numbers"`
}

func (s *server) addNumbers(w http.ResponseWriter, r *http.Request) error {
	var req numbersRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	if err := s.store.AddNumbers(r.Context(), req.Numbers...); err != nil {
		return err
	}
	// Answer with the pool entries just added, in their stored form.
	added := make([]string, 0, len(req.Numbers))
	for _, x := range req.Numbers {
		h, err := binding.NormaliseHost(x)
		if err != nil {
			return err
		}
		added = append(added, h)
	}
	pool, err := s.store.ListNumbers(r.Context())
	if err != nil {
		return err
	}
	out := make([]binding.Number, 0, len(added))
	for _, n := range pool {
		if slices.Contains(added, n.Host) {
			out = append(out, n)
		}
	}
	s.writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *server) listNumbers(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	pool, err := s.store.ListNumbers(r.Context())
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, nonNil(pool))
	return nil
}

// bindingRequest is the body of POST /v1/bindings.
type bindingRequest struct {
	Merchant    string `json:"merchant"`
	Order       string `json:"order"`
	Consignee   string `json:"consignee"`
	OrderStatus string `json:"order_status"`
	TTL         string `json:"ttl"`
}

func (s *server) createBinding(w http.ResponseWriter, r *http.Request) error {
	var req bindingRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		return err
	}
	b, err := s.store.CreateBinding(r.Context(), binding.CreateRequest{Merchant: req.Merchant, Order: req.Order,
		Consignee: req.Consignee, OrderStatus: req.OrderStatus, TTL: ttl}, s.opts.Now())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/bindings/"+b.ID)
	s.writeJSON(w, http.StatusCreated, b)
	return nil
}

func (s *server) listBindings(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "merchant", "order", "limit", "cursor"); err != nil {
		return err
	}
	q := r.URL.Query()
	page, err := parsePage(q, bindingCursor)
	if err != nil {
		return err
	}
	rows, err := s.store.Bindings(r.Context(), binding.BindingFilter{Merchant: q.Get("merchant"), Order: q.Get("order")}, page)
	if err != nil {
		return err
	}
	return streamJSON(s, w, r, rows, bindingCursor)
}

func (s *server) getBinding(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	b, err := s.store.GetBinding(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, b)
	return nil
}

// renewRequest is the optional body of POST /v1/bindings/{id}/renew.
type renewRequest struct {
	TTL string `json:"ttl"`
}

func (s *server) renewBinding(w http.ResponseWriter, r *http.Request) error {
	var req renewRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		return err
	}
	b, err := s.store.Renew(r.Context(), r.PathValue("id"), ttl, s.opts.Now())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/bindings/"+b.ID)
	s.writeJSON(w, http.StatusCreated, b)
	return nil
}

func (s *server) releaseBinding(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	b, err := s.store.Release(r.Context(), r.PathValue("id"), s.opts.Now())
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *server) listCDRs(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "merchant", "from", "to", "limit", "cursor"); err != nil {
		return err
	}
	q := r.URL.Query()
	from, err := binding.ParseTime(q.Get("from"), s.opts.Location)
	if err != nil {
		return badRequest("from: " + err.Error())
	}
	to, err := binding.ParseTime(q.Get("to"), s.opts.Location)
	if err != nil {
		return badRequest("to: " + err.Error())
	}
	if !from.IsZero() && !to.IsZero() && from.After(to) {
		return badRequest(fmt.Sprintf("from %s is after to %s", q.Get("from"), q.Get("to")))
	}
	page, err := parsePage(q, cdrCursor)
	if err != nil {
		return err
	}
	rows, err := s.store.CDRs(r.Context(), binding.CDRFilter{Merchant: q.Get("merchant"), From: from, To: to}, page)
	if err != nil {
		return err
	}
	if wantsCSV(r.Header.Get("Accept")) {
		// The same columns and cells as `vnum cdr list --format csv`,
		// through the one writer that keeps cells from being read as
		// formulas.
		return streamCSV(s, w, r, rows, cdrCursor, "cdrs.csv", callrec.Columns(), callrec.Record.Row)
	}
	return streamJSON(s, w, r, rows, cdrCursor)
}

func (s *server) bill(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	month := r.PathValue("month")
	if _, _, err := binding.MonthRange(month, s.opts.Location); err != nil {
		return badRequest(err.Error())
	}
	b, err := s.store.Bill(r.Context(), r.PathValue("merchant"), month, s.opts.Location, s.opts.Rates, s.opts.Currency)
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *server) calls(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	calls := []callrec.LiveCall{}
	if s.opts.Calls != nil {
		calls = nonNil(s.opts.Calls())
	}
	s.writeJSON(w, http.StatusOK, calls)
	return nil
}

func (s *server) openAPI(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, json.RawMessage(openAPIDocument))
	return nil
}

func (s *server) metrics(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Metrics == nil {
		return &httpError{status: http.StatusNotFound, msg: "metrics are not configured"}
	}
	s.opts.Metrics.ServeHTTP(w, r)
	return nil
}

// status is the body of the probes' answers.
type status struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) error {
	s.writeJSON(w, http.StatusOK, status{Status: "ok"})
	return nil
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	ready := s.opts.Ready
	if ready == nil {
		ready = s.store.Ping
	}
	if err := ready(ctx); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("readiness check timed out after %s: %w", readyTimeout, err)
		}
		s.log.Warn("admin api: not ready", "error", err)
		s.writeJSON(w, http.StatusServiceUnavailable, status{Status: "unavailable", Error: err.Error()})
		return nil
	}
	s.writeJSON(w, http.StatusOK, status{Status: "ready"})
	return nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
