package api

import (
	"net/http"
	"strconv"

	"github.com/vnum/vnum/binding"
)

// The endpoints of call events (README "Call events"): a merchant's
// webhook, the outbox's events, and a retry by hand.

// webhookRequest is the body of PUT /v1/merchants/{id}/webhook.
type webhookRequest struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

func (s *server) getWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	wh, err := s.store.Webhook(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, wh)
	return nil
}

// setWebhook registers the endpoint once its URL and secret pass the
// store's rules and its host the delivery side's (Options.CheckWebhook):
// the cheap checks first, and a merchant that does not exist before any
// name is resolved.
func (s *server) setWebhook(w http.ResponseWriter, r *http.Request) error {
	var req webhookRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	merchant := r.PathValue("id")
	if _, err := s.store.Merchant(r.Context(), merchant); err != nil {
		return err
	}
	if err := binding.CheckWebhook(req.URL, req.Secret); err != nil {
		return err
	}
	if s.opts.CheckWebhook != nil {
		if err := s.opts.CheckWebhook(r.Context(), req.URL); err != nil {
			return &httpError{status: http.StatusUnprocessableEntity, msg: err.Error()}
		}
	}
	wh, err := s.store.SetWebhook(r.Context(), merchant, req.URL, req.Secret)
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, wh)
	return nil
}

func (s *server) removeWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	if err := s.store.RemoveWebhook(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) listEvents(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "merchant", "status", "limit"); err != nil {
		return err
	}
	q := r.URL.Query()
	f := binding.EventFilter{Merchant: q.Get("merchant"), Status: q.Get("status")}
	if err := binding.CheckEventStatus(f.Status); err != nil {
		return badRequest(err.Error())
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > binding.MaxEventLimit {
			return badRequest("limit " + strconv.Quote(v) + ": want 1 to " + strconv.Itoa(binding.MaxEventLimit))
		}
		f.Limit = n
	}
	es, err := s.store.ListEvents(r.Context(), f)
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, nonNil(es))
	return nil
}

func (s *server) retryEvent(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	e, err := s.store.RetryEvent(r.Context(), r.PathValue("id"), s.opts.Now())
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, e)
	return nil
}
