package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/binding/api"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/internal/testwav"
	"github.com/vnum/vnum/protection"
)

// platformPolicy is the platform's protection the tests configure: quiet
// 21:00-08:00 in Shanghai, three calls a day, ten a binding, inform.
func platformPolicy(t *testing.T) protection.Platform {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	w, err := protection.ParseWindow("21:00-08:00")
	require.NoError(t, err)
	return protection.Platform{Location: loc, QuietHours: w, CallsPerDay: 3, CallsPerBinding: 10,
		Announce: protection.AnnounceInform, ConfirmTimeout: 10 * time.Second, BlockKey: "*9", AfterClose: 360 * time.Hour}
}

// protectionHarness is the API with the test platform's protection and a
// clock the test sets.
func protectionHarness(t *testing.T, now *time.Time) *harness {
	t.Helper()
	p := platformPolicy(t)
	return newHarness(t, func(o *api.Options) {
		o.Protection = func() protection.Platform { return p }
		o.Now = func() time.Time { return *now }
	})
}

// TestOrderStatusEndpoint: the order moves through the lifecycle, its
// closing ends the binding after_close later; a forbidden move is 409
// naming where it may go, an unknown status 422 listing them, and
// neither changes anything.
func TestOrderStatusEndpoint(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	h := protectionHarness(t, &now)
	seedAPI(t, h)
	b := createBinding(t, h, "o-1", consignee)
	id := b["id"].(string)
	require.Equal(t, "both", b["calls"])
	require.Nil(t, b["order_closed_at"])
	path := "/v1/bindings/" + id + "/order-status"

	before := h.snapshot()
	r := h.do(request{method: "POST", path: path, body: map[string]string{"order_status": "closed"}})
	require.Equal(t, http.StatusConflict, r.status)
	require.Equal(t, "order status cannot move from shipped to closed: from shipped it moves to delivered", r.object(t)["error"])
	r = h.do(request{method: "POST", path: path, body: map[string]string{"order_status": "recieved"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.object(t)["error"], "want shipped, delivered, closed or after_sale")
	r = h.do(request{method: "POST", path: path, body: map[string]string{"status": "delivered"}})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, before, h.snapshot(), "nothing changed")

	r = h.do(request{method: "POST", path: path, body: map[string]string{"order_status": "delivered"}})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "delivered", r.object(t)["order_status"])
	now = now.Add(24 * time.Hour)
	r = h.do(request{method: "POST", path: path, body: map[string]string{"order_status": "closed"}})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	got := r.object(t)
	require.Equal(t, "closed", got["order_status"])
	require.Equal(t, "2026-11-02T08:00:00Z", got["order_closed_at"])
	require.Equal(t, "2026-11-17T08:00:00Z", got["expires_at"], "closed + 360h")
	r = h.do(request{method: "POST", path: path, body: map[string]string{"order_status": "after_sale"}})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "2026-12-01T08:00:00Z", r.object(t)["expires_at"], "after_sale puts the ttl's end back")

	r = h.do(request{method: "POST", path: "/v1/bindings/b_0000000000000000/order-status",
		body: map[string]string{"order_status": "delivered"}})
	require.Equal(t, http.StatusNotFound, r.status)
}

// TestOneWayBindingEndpoint: calls is taken at creation and shown.
func TestOneWayBindingEndpoint(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	r := h.do(request{method: "POST", path: "/v1/bindings", body: map[string]string{
		"merchant": "m1", "order": "o-1", "consignee": consignee, "order_status": "shipped", "calls": "to_consignee"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.Equal(t, "to_consignee", r.object(t)["calls"])
	before := h.snapshot()
	r = h.do(request{method: "POST", path: "/v1/bindings", body: map[string]string{
		"merchant": "m1", "order": "o-2", "consignee": consignee, "order_status": "shipped", "calls": "one-way"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Contains(t, r.object(t)["error"], `calls "one-way"`)
	require.Equal(t, before, h.snapshot())
}

// TestProtectionEndpoint: a merchant's own protection shows with the
// platform's and the effective policy; a looser value is 400 and stores
// nothing; {} removes it.
func TestProtectionEndpoint(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	h := protectionHarness(t, &now)
	seedAPI(t, h)
	path := "/v1/merchants/m1/protection"

	r := h.do(request{method: "GET", path: path})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	got := r.object(t)
	require.Equal(t, "Asia/Shanghai", got["timezone"])
	require.Equal(t, []any{"21:00-08:00"}, got["quiet_hours"])
	require.EqualValues(t, 3, got["calls_per_day"])
	require.Equal(t, "inform", got["announce"])
	require.Equal(t, []any{}, got["from_merchant"])

	r = h.do(request{method: "PUT", path: path, body: map[string]any{"quiet_hours": "12:00-14:00", "calls_per_day": 2,
		"announce": "confirm", "record": true}})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	got = r.object(t)
	require.Equal(t, []any{"21:00-08:00", "12:00-14:00"}, got["quiet_hours"])
	require.EqualValues(t, 2, got["calls_per_day"])
	require.EqualValues(t, 10, got["calls_per_binding"])
	require.Equal(t, "confirm", got["announce"])
	require.Equal(t, true, got["record"])
	require.Equal(t, []any{"quiet_hours", "calls_per_day", "announce", "record"}, got["from_merchant"])
	require.Equal(t, map[string]any{"quiet_hours": "12:00-14:00", "calls_per_day": 2.0, "calls_per_binding": 0.0,
		"announce": "confirm", "record": true}, got["own"])
	require.Equal(t, map[string]any{"quiet_hours": "21:00-08:00", "calls_per_day": 3.0, "calls_per_binding": 10.0,
		"announce": "inform"}, got["platform"])
	require.Equal(t, r.body, h.do(request{method: "GET", path: path}).body, "GET shows what PUT answered")

	before := h.snapshot()
	for body, want := range map[string]string{
		`{"calls_per_day": 5}`:           "calls_per_day 5 is above the platform's 3",
		`{"calls_per_binding": 11}`:      "calls_per_binding 11 is above the platform's 10",
		`{"announce": "off"}`:            "announce off is weaker than the platform's inform",
		`{"quiet_hours": "lunchtime"}`:   `quiet hours "lunchtime"`,
		`{"quiet_hours": "12:00-12:00"}`: "the window starts where it ends",
		`{"announce": "shout"}`:          `announce "shout"`,
		`{"calls_per_day": -1}`:          "calls_per_day -1",
		`{"calls_per_day": "two"}`:       `field "calls_per_day": want a number`,
		`{"colour": "red"}`:              `unknown field "colour"`,
	} {
		r := h.do(request{method: "PUT", path: path, body: body})
		require.Equal(t, http.StatusBadRequest, r.status, body)
		require.Contains(t, r.object(t)["error"], want, body)
	}
	require.Equal(t, before, h.snapshot(), "nothing stored")

	r = h.do(request{method: "PUT", path: path, body: `{}`})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, []any{}, r.object(t)["from_merchant"])
	require.Equal(t, http.StatusNotFound, h.do(request{method: "GET", path: "/v1/merchants/m9/protection"}).status)
	require.Equal(t, http.StatusNotFound, h.do(request{method: "PUT", path: "/v1/merchants/m9/protection", body: `{}`}).status)
}

// TestAnnouncementEndpoint: a short 8 kHz mono clip is stored and
// replaced; anything else is 400 with one line and stores nothing.
func TestAnnouncementEndpoint(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seedAPI(t, h)
	path := "/v1/merchants/m1/announcement"
	wav := str("audio/wav")

	r := h.do(request{method: "PUT", path: path, body: testwav.Audio(7, 1, 8000, 20000), contentType: wav})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, map[string]any{"merchant": "m1", "encoding": "ulaw", "milliseconds": 2500.0}, r.object(t))

	before := h.snapshot()
	for name, c := range map[string]struct {
		body []byte
		want string
	}{
		"too long": {testwav.Audio(1, 1, 8000, 5*8000+1), "it lasts 5.0 s"},
		"16 kHz":   {testwav.Audio(1, 1, 16000, 100), "sampled at 16000 Hz"},
		"stereo":   {testwav.Audio(6, 2, 8000, 100), "2 channels"},
		"an mp3":   {[]byte("ID3\x04\x00 not a wav"), "not a WAV file"},
		"no sound": {testwav.Audio(1, 1, 8000, 0), "holds no sound"},
		"empty":    {[]byte{}, "not a WAV file"},
	} {
		r := h.do(request{method: "PUT", path: path, body: c.body, contentType: wav})
		require.Equal(t, http.StatusBadRequest, r.status, name)
		msg := r.object(t)["error"].(string)
		require.Contains(t, msg, c.want, name)
		require.Contains(t, msg, "8 kHz mono", name)
	}
	r = h.do(request{method: "PUT", path: path, body: testwav.Audio(1, 1, 8000, 100), contentType: str("application/json")})
	require.Equal(t, http.StatusUnsupportedMediaType, r.status)
	require.Equal(t, before, h.snapshot(), "nothing stored")

	r = h.do(request{method: "PUT", path: path, body: testwav.Audio(1, 1, 8000, 8000), contentType: str("audio/x-wav")})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "pcm16", r.object(t)["encoding"])
	require.Equal(t, http.StatusNotFound, h.do(request{method: "PUT", path: "/v1/merchants/m9/announcement",
		body: testwav.Audio(1, 1, 8000, 10), contentType: wav}).status)

	require.Equal(t, http.StatusNoContent, h.do(request{method: "DELETE", path: path}).status)
	r = h.do(request{method: "DELETE", path: path})
	require.Equal(t, http.StatusNotFound, r.status)
	require.Contains(t, r.object(t)["error"], "it has none")
}

// TestBlocksEndpoint: an operator blocks a merchant or a PSTN caller
// through a binding; the list shows the binding, never the consignee;
// the block holds for the merchant's other binding to the consignee and
// not for another merchant's; removing it lifts it.
func TestBlocksEndpoint(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	h := protectionHarness(t, &now)
	seedAPI(t, h)
	require.Equal(t, http.StatusCreated, h.do(request{method: "POST", path: "/v1/merchants",
		body: map[string]string{"id": "m2"}}).status)
	b1 := createBinding(t, h, "o-1", consignee)["id"].(string)
	b2 := createBinding(t, h, "o-2", consignee)["id"].(string)
	r := h.do(request{method: "POST", path: "/v1/bindings", body: map[string]string{
		"merchant": "m2", "order": "o-9", "consignee": consignee, "order_status": "shipped"}})
	require.Equal(t, http.StatusCreated, r.status)
	foreign := r.object(t)["id"].(string)

	r = h.do(request{method: "POST", path: "/v1/blocks", body: map[string]string{"binding": b1}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	blk := r.object(t)
	require.Equal(t, "/v1/blocks/"+blk["id"].(string), r.header.Get("Location"))
	require.Equal(t, map[string]any{"id": blk["id"], "binding": b1, "merchant": "m1", "caller": "",
		"source": "operator", "created_at": "2026-11-01T08:00:00Z"}, blk)
	r = h.do(request{method: "POST", path: "/v1/blocks", body: map[string]string{"binding": foreign, "caller": "137 0013 7000"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.Equal(t, "+8613700137000", r.object(t)["caller"])

	p := platformPolicy(t)
	p.QuietHours = protection.Window{}
	take := func(id string) protection.Verdict {
		d, err := h.store.TakeRing(context.Background(), callrec.Ring{BindingID: id, CallerKind: callrec.CallerAccount,
			Caller: "alice"}, p, now)
		require.NoError(t, err)
		return d.Verdict
	}
	require.Equal(t, protection.Blocked, take(b2), "the merchant's other binding to the consignee")
	require.Equal(t, protection.Allow, take(foreign), "another merchant's binding to them")

	before := h.snapshot()
	for name, c := range map[string]struct {
		body   any
		status int
		want   string
	}{
		"again":           {map[string]string{"binding": b2}, http.StatusConflict, "already blocked"},
		"unknown binding": {map[string]string{"binding": "b_0000000000000000"}, http.StatusNotFound, "not found"},
		"no binding":      {map[string]string{"caller": "13700137000"}, http.StatusBadRequest, "binding:"},
		"bad caller":      {map[string]string{"binding": b1, "caller": "courier"}, http.StatusUnprocessableEntity, "not a phone number"},
	} {
		r := h.do(request{method: "POST", path: "/v1/blocks", body: c.body})
		require.Equal(t, c.status, r.status, name)
		require.Contains(t, r.object(t)["error"], c.want, name)
	}
	require.Equal(t, before, h.snapshot(), "nothing stored")

	var list []map[string]any
	r = h.do(request{method: "GET", path: "/v1/blocks"})
	require.Equal(t, http.StatusOK, r.status)
	r.decode(t, &list)
	require.Len(t, list, 2)
	r = h.do(request{method: "GET", path: "/v1/blocks?merchant=m2"})
	require.Equal(t, http.StatusOK, r.status)
	r.decode(t, &list)
	require.Len(t, list, 1)
	require.Equal(t, foreign, list[0]["binding"])
	require.Equal(t, http.StatusNotFound, h.do(request{method: "GET", path: "/v1/blocks?merchant=m9"}).status)
	require.Equal(t, http.StatusBadRequest, h.do(request{method: "GET", path: "/v1/blocks?merchnt=m1"}).status)

	require.Equal(t, http.StatusNoContent, h.do(request{method: "DELETE", path: "/v1/blocks/" + blk["id"].(string)}).status)
	require.Equal(t, protection.Allow, take(b2), "removed: lifted")
	require.Equal(t, http.StatusNotFound, h.do(request{method: "DELETE", path: "/v1/blocks/" + blk["id"].(string)}).status)

	// A block made by the consignee's keys lists the same way.
	_, _, err := h.store.BlockFromConsignee(context.Background(), b1, "", callrec.CallerAccount, "alice", now)
	require.NoError(t, err)
	r = h.do(request{method: "GET", path: "/v1/blocks?merchant=m1"})
	r.decode(t, &list)
	require.Len(t, list, 1)
	require.Equal(t, binding.BlockByConsignee, list[0]["source"])
}
