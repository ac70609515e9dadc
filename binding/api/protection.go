package api

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/vnum/vnum/binding"
)

// Consignee protection over HTTP: the order's lifecycle, a merchant's own
// protection and clip, and blocks. What these answer carries no consignee
// number: blocks show the binding they were made through.

// orderStatusRequest is the body of POST /v1/bindings/{id}/order-status.
type orderStatusRequest struct {
	OrderStatus string `json:"order_status"`
}

func (s *server) setOrderStatus(w http.ResponseWriter, r *http.Request) error {
	var req orderStatusRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	b, err := s.store.SetOrderStatus(r.Context(), r.PathValue("id"), req.OrderStatus, s.opts.Protection().AfterClose,
		s.opts.Now())
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *server) getProtection(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	v, err := s.store.ProtectionView(r.Context(), r.PathValue("id"), s.opts.Protection())
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, v)
	return nil
}

// putProtection replaces the merchant's own protection with the body;
// fields left out are none of its own. A part looser than the platform's
// is a 400 and nothing is stored.
func (s *server) putProtection(w http.ResponseWriter, r *http.Request) error {
	var req binding.OwnJSON
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	own, err := req.Own()
	if err != nil {
		return err
	}
	platform := s.opts.Protection()
	if err := s.store.SetMerchantProtection(r.Context(), r.PathValue("id"), own, platform); err != nil {
		return err
	}
	v, err := s.store.ProtectionView(r.Context(), r.PathValue("id"), platform)
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, v)
	return nil
}

// announcementResponse describes a stored clip.
type announcementResponse struct {
	Merchant     string `json:"merchant"`
	Encoding     string `json:"encoding"`
	Milliseconds int64  `json:"milliseconds"`
}

// putAnnouncement stores the body, a WAV file, as the merchant's clip.
func (s *server) putAnnouncement(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil ||
		(mt != "audio/wav" && mt != "audio/x-wav" && mt != "audio/wave") {
		return &httpError{status: http.StatusUnsupportedMediaType, msg: "request body: want Content-Type: audio/wav"}
	}
	wav, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return badRequest("request body: " + err.Error())
	}
	clip, err := s.store.SetAnnouncement(r.Context(), r.PathValue("id"), wav)
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, announcementResponse{Merchant: r.PathValue("id"), Encoding: clip.Encoding.String(),
		Milliseconds: clip.Duration().Milliseconds()})
	return nil
}

func (s *server) deleteAnnouncement(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	if err := s.store.RemoveAnnouncement(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	s.writeNoContent(w)
	return nil
}

// blockRequest is the body of POST /v1/blocks: the binding to block its
// merchant through, or the PSTN caller of that binding to block.
type blockRequest struct {
	Binding string `json:"binding"`
	Caller  string `json:"caller"`
}

func (s *server) addBlock(w http.ResponseWriter, r *http.Request) error {
	var req blockRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	if req.Binding == "" {
		return badRequest("binding: want the id of the binding whose consignee is to be protected")
	}
	b, err := s.store.AddBlock(r.Context(), req.Binding, req.Caller, s.opts.Now())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/blocks/"+b.ID)
	s.writeJSON(w, http.StatusCreated, b)
	return nil
}

func (s *server) listBlocks(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "merchant"); err != nil {
		return err
	}
	bs, err := s.store.Blocks(r.Context(), r.URL.Query().Get("merchant"))
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, nonNil(bs))
	return nil
}

func (s *server) removeBlock(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	if err := s.store.RemoveBlock(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	s.writeNoContent(w)
	return nil
}
