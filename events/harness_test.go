package events

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/internal/pgtest"
)

// secret is the test merchant's webhook secret.
const secret = "whsec-0123456789abcdef"

// consignee is B: it must be in no body.
const consignee = "13800138000"

// backend opens stores of one driver on one new database.
type backend struct {
	driver string
	newDSN func(t testing.TB) string
}

var backends = []backend{
	{binding.DriverSQLite, func(t testing.TB) string { return filepath.Join(t.TempDir(), "vnum.db") }},
	// Skipped when PostgreSQL is not installed, unless VNUMTEST_REQUIRE_POSTGRES=1.
	{binding.DriverPostgres, pgtest.DSN},
}

// eachBackend runs fn as parallel subtests on SQLite and PostgreSQL.
func eachBackend(t *testing.T, fn func(t *testing.T, be backend)) {
	t.Helper()
	for _, be := range backends {
		t.Run(be.driver, func(t *testing.T) {
			t.Parallel()
			fn(t, be)
		})
	}
}

// open opens a store on dsn, closed at cleanup.
func (be backend) open(t testing.TB, dsn string) *binding.Store {
	t.Helper()
	s, err := binding.Open(context.Background(), be.driver, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// seeded opens a store on a new database with merchant m1, whose webhook
// is url, a host number and a binding; it returns the store, the DSN and
// the binding.
func (be backend) seeded(t testing.TB, url string) (*binding.Store, string, *binding.Binding) {
	t.Helper()
	dsn := be.newDSN(t)
	s := be.open(t, dsn)
	ctx := context.Background()
	require.NoError(t, s.AddMerchant(ctx, "m1", "Shop"))
	require.NoError(t, s.AddNumbers(ctx, "17000000001"))
	b, err := s.CreateBinding(ctx, binding.CreateRequest{Merchant: "m1", Order: "o-1", Consignee: consignee,
		OrderStatus: "shipped"}, time.Now())
	require.NoError(t, err)
	_, err = s.SetWebhook(ctx, "m1", url, secret)
	require.NoError(t, err)
	return s, dsn, b
}

// call writes the record of one answered call through b, as signalling
// does: four events.
func call(t testing.TB, s *binding.Store, b *binding.Binding, id string) *callrec.Record {
	t.Helper()
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Second)
	c := &callrec.Record{ID: id, CallID: id + "@a", Merchant: "m1", Host: b.Host, Direction: callrec.DirectionToConsignee,
		Caller: "alice", CallerKind: callrec.CallerAccount, StartedAt: at}
	require.NoError(t, s.StartCDR(ctx, c))
	c.BindingID, c.Order, c.Extension = b.ID, b.Order, b.Extension
	require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{}))
	c.RingingAt = at.Add(time.Second)
	c.AnsweredAt = at.Add(2 * time.Second)
	require.NoError(t, s.UpdateCDR(ctx, c, callrec.Legs{}))
	c.EndedAt, c.HangupBy = at.Add(30*time.Second), callrec.HangupCaller
	rates, err := binding.ParseRates("0.02", "0.00018")
	require.NoError(t, err)
	require.NoError(t, s.FinishCDR(ctx, c, rates))
	return c
}

// start starts a dispatcher on s that polls often, stopped at cleanup.
func start(t testing.TB, s *binding.Store, ev config.Events, lookup Lookup) *Dispatcher {
	t.Helper()
	d := Start(Options{Store: s, Config: ev, Lookup: lookup, Poll: 10 * time.Millisecond, Sweep: 50 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Stop(ctx)
	})
	return d
}

// fastRetries is a schedule for tests: two more attempts, soon.
var fastRetries = []time.Duration{20 * time.Millisecond, 40 * time.Millisecond}

// received is one request the receiver took.
type received struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Merchant string         `json:"merchant"`
	CallID   string         `json:"call_id"`
	Sequence int            `json:"sequence"`
	Data     map[string]any `json:"data"`
	raw      string
	status   int
}

// receiver is a merchant's endpoint: a real HTTP server on 127.0.0.1 that
// checks each request as a merchant would (verify) and keeps what came.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	// answer gives the status of the n-th request for an event id (from
	// 1); nil answers 200.
	answer func(id string, n int) int
	// delay is how long each answer takes.
	delay time.Duration

	mu       sync.Mutex
	got      []received
	tries    map[string]int
	inflight map[string]bool
	overlaps []string // ids that were being received twice at once
	bad      []string // requests that failed the merchant's checks
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, tries: map[string]int{}, inflight: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err == nil {
		err = verify(secret, req.Header.Get("Vnum-Signature"), body)
	}
	if err == nil && (req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json") {
		err = fmt.Errorf("%s with Content-Type %q", req.Method, req.Header.Get("Content-Type"))
	}
	var ev received
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	r.mu.Lock()
	if err != nil {
		r.bad = append(r.bad, err.Error())
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.inflight[ev.ID] {
		r.overlaps = append(r.overlaps, ev.ID)
	}
	r.inflight[ev.ID] = true
	r.tries[ev.ID]++
	n := r.tries[ev.ID]
	r.mu.Unlock()

	time.Sleep(r.delay)
	status := http.StatusOK
	if r.answer != nil {
		status = r.answer(ev.ID, n)
	}
	ev.raw, ev.status = string(body), status
	r.mu.Lock()
	delete(r.inflight, ev.ID)
	r.got = append(r.got, ev)
	r.mu.Unlock()
	w.WriteHeader(status)
}

// verify is how a merchant checks a delivery, as README "Call events"
// shows it in Go: the HMAC-SHA256 of "<t>.<body>" under the secret, and a
// t no older than five minutes.
func verify(secret, header string, body []byte) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(t, 0)).Abs() > 5*time.Minute {
		return errors.New("missing or stale timestamp")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	if !hmac.Equal([]byte(sig), []byte(hex.EncodeToString(mac.Sum(nil)))) {
		return errors.New("bad signature")
	}
	return nil
}

// delivered returns the events answered 2xx, in the order they came.
func (r *receiver) delivered() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []received
	for _, e := range r.got {
		if e.status/100 == 2 {
			out = append(out, e)
		}
	}
	return out
}

// wait waits until n events were delivered, and fails the test after
// within.
func (r *receiver) wait(n int, within time.Duration) []received {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := r.delivered()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("want %d events delivered within %s, have %d", n, within, len(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// requireSound checks what every receiver must see: each request passed
// the merchant's checks, no id was being received twice at once, and no
// body holds B.
func (r *receiver) requireSound() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Empty(r.t, r.bad, "requests that failed the merchant's checks")
	require.Empty(r.t, r.overlaps, "events received twice at once")
	for _, e := range r.got {
		require.NotContains(r.t, e.raw, consignee)
		require.NotContains(r.t, e.raw, "8613800138000")
	}
}

// requireInOrder checks that each call's events came in sequence order,
// 1, 2, 3 ... with no gap, and that a call has want events.
func requireInOrder(t *testing.T, got []received, want int) {
	t.Helper()
	next := map[string]int{}
	for _, e := range got {
		if e.CallID == "" {
			continue
		}
		require.Equal(t, next[e.CallID]+1, e.Sequence, "call %s: %s came out of order", e.CallID, e.Type)
		next[e.CallID] = e.Sequence
	}
	for id, n := range next {
		require.Equal(t, want, n, "call %s", id)
	}
}
