package events

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/config"
)

// local is the events section of a test whose receiver is on loopback.
func local(retries ...time.Duration) config.Events {
	return config.Events{Timeout: 2 * time.Second, Retries: retries, AllowPrivate: true}
}

// TestDeliveredSignedInOrder: a real receiver gets every event of three
// calls, each signed so that the merchant's own check passes, each call's
// in sequence order; the first attempt of every event is refused (503),
// and the retry carries the same id and the same body. No body holds B.
func TestDeliveredSignedInOrder(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		r := newReceiver(t)
		r.answer = func(_ string, n int) int {
			if n == 1 {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		}
		s, _, b := be.seeded(t, r.srv.URL+"/vnum/events")
		d := start(t, s, local(fastRetries...), nil)
		calls := map[string]bool{}
		for i := range 3 {
			calls[call(t, s, b, fmt.Sprintf("c-%d", i)).ID] = true
		}
		got := r.wait(12, 30*time.Second)
		r.requireSound()
		requireInOrder(t, got, 4)

		r.mu.Lock()
		first := map[string]string{}
		for _, e := range r.got {
			if e.status == http.StatusServiceUnavailable {
				first[e.ID] = e.raw
			}
		}
		r.mu.Unlock()
		for _, e := range got {
			require.True(t, calls[e.CallID])
			require.Equal(t, "m1", e.Merchant)
			require.Equal(t, first[e.ID], e.raw, "the retry of %s is the same event", e.ID)
			require.Equal(t, b.ID, e.Data["binding"])
		}
		byCall := map[string][]received{}
		for _, e := range got {
			byCall[e.CallID] = append(byCall[e.CallID], e)
		}
		for _, es := range byCall {
			require.Equal(t, []string{"call.started", "call.ringing", "call.answered", "call.ended"},
				[]string{es[0].Type, es[1].Type, es[2].Type, es[3].Type})
			require.Equal(t, "answered", es[3].Data["disposition"], "call.ended carries the CDR")
			require.Equal(t, "0.02000", es[3].Data["fee"])
		}

		// The receiver has the last event before its sender notes the
		// answer: wait for the counts to catch up.
		require.Eventually(t, func() bool {
			counts := d.Counts()
			return counts[[2]string{"call.ended", OutcomeDelivered}] == 3 &&
				counts[[2]string{"call.ended", OutcomeRetried}] == 3
		}, 10*time.Second, 10*time.Millisecond, "call.ended delivered 3 times, each after a retry: %v", d.Counts())
		require.Eventually(t, func() bool {
			n, err := d.Pending(context.Background())
			return err == nil && n == 0
		}, 10*time.Second, 10*time.Millisecond)
	})
}

// TestFailedThenRetriedByHand: a receiver that refuses everything gets
// each attempt of the schedule of the call's first event, then the event
// is failed and the call's other events wait behind it, unsent; retried by
// hand once the receiver is back, it and the rest arrive, in order.
func TestFailedThenRetriedByHand(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		r := newReceiver(t)
		var down atomic.Bool
		down.Store(true)
		r.answer = func(string, int) int {
			if down.Load() {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		}
		s, _, b := be.seeded(t, r.srv.URL)
		d := start(t, s, local(fastRetries...), nil)
		c := call(t, s, b, "c-1")
		ctx := context.Background()

		var failed []binding.Event
		require.Eventually(t, func() bool {
			var err error
			failed, err = s.ListEvents(ctx, binding.EventFilter{Status: binding.EventFailed})
			return err == nil && len(failed) == 1
		}, 20*time.Second, 10*time.Millisecond)
		require.Equal(t, "call.started", failed[0].Type)
		require.Equal(t, 3, failed[0].Attempts, "one attempt and the two retries")
		require.Equal(t, "HTTP 500 Internal Server Error", failed[0].LastError)
		time.Sleep(100 * time.Millisecond)
		r.mu.Lock()
		require.Len(t, r.got, 3, "the call's later events were never sent before their turn")
		r.mu.Unlock()
		require.Eventually(t, func() bool { return d.Counts()[[2]string{"call.started", OutcomeFailed}] == 1 },
			10*time.Second, 10*time.Millisecond)

		down.Store(false)
		_, err := s.RetryEvent(ctx, failed[0].ID, time.Now())
		require.NoError(t, err)
		got := r.wait(4, 20*time.Second)
		requireInOrder(t, got, 4)
		require.Equal(t, c.ID, got[0].CallID)
		r.requireSound()
	})
}

// TestPrivateRefused: a webhook on a loopback or private address, or a
// name that resolves to one, is refused at registration unless
// events.allow_private; a name that resolved outside at registration and
// points inside at delivery is refused at delivery, on the address the
// dialer was about to connect to, and the receiver gets nothing, until
// allow_private is turned on.
func TestPrivateRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, u := range []string{"http://127.0.0.1:8080/", "http://localhost/x", "http://[::1]/", "https://10.1.2.3/",
		"http://169.254.169.254/latest/meta-data", "http://192.168.0.1/", "http://[fd00::1]/", "http://0.0.0.0/",
		"http://100.64.0.1/", "http://[::ffff:127.0.0.1]/", "http://inside.example/"} {
		err := CheckURL(ctx, u, false, fakeDNS(map[string]string{"inside.example": "10.0.0.7", "localhost": "127.0.0.1"}))
		require.ErrorIs(t, err, ErrPrivate, u)
		require.NoError(t, CheckURL(ctx, u, true, nil), "%s with allow_private", u)
	}
	require.NoError(t, CheckURL(ctx, "https://203.0.113.10/hook", false, nil))
	require.ErrorContains(t, CheckURL(ctx, "https://nowhere.example/", false, fakeDNS(nil)), "does not resolve")

	r := newReceiver(t)
	port := r.srv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	url := fmt.Sprintf("http://hooks.example.com:%d/events", port)
	// The name points outside when registered, inside when delivered to.
	var inside atomic.Bool
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		if host != "hooks.example.com" {
			return nil, fmt.Errorf("no such host %s", host)
		}
		if inside.Load() {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("203.0.113.10")}, nil
	}
	ev := config.Events{Timeout: 2 * time.Second, Retries: []time.Duration{time.Hour}}
	require.NoError(t, CheckURL(ctx, url, false, lookup))
	s, _, b := backends[0].seeded(t, url)
	inside.Store(true)
	d := start(t, s, ev, lookup)
	require.ErrorIs(t, d.CheckURL(ctx, url), ErrPrivate, "registered again now, it is refused")
	call(t, s, b, "c-1")

	var es []binding.Event
	require.Eventually(t, func() bool {
		var err error
		es, err = s.ListEvents(ctx, binding.EventFilter{Merchant: "m1"})
		return err == nil && len(es) == 4 && es[3].Attempts == 1 && es[3].LastError != ""
	}, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, es[3].LastError, "127.0.0.1")
	require.Contains(t, es[3].LastError, "loopback or private address")
	r.mu.Lock()
	require.Empty(t, r.got, "nothing reached the receiver")
	r.mu.Unlock()

	d.Reload(config.Events{Timeout: 2 * time.Second, Retries: []time.Duration{time.Hour}, AllowPrivate: true})
	_, err := s.RetryEvent(ctx, es[3].ID, time.Now())
	require.NoError(t, err)
	requireInOrder(t, r.wait(4, 20*time.Second), 4)
	r.requireSound()
}

// fakeDNS resolves the names it is given, and no other.
func fakeDNS(names map[string]string) Lookup {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		ip, ok := names[host]
		if !ok {
			return nil, fmt.Errorf("lookup %s: no such host", host)
		}
		return []netip.Addr{netip.MustParseAddr(ip)}, nil
	}
}

// TestTwoNodesDeliverOnce: two stores on one PostgreSQL database, each
// with its workers (two nodes), deliver many calls' events to one slow
// receiver: every event arrives, once, each call's in order, and the
// receiver never sees one id in two requests at once.
func TestTwoNodesDeliverOnce(t *testing.T) {
	t.Parallel()
	be := backends[1]
	r := newReceiver(t)
	r.delay = 20 * time.Millisecond
	s1, dsn, b := be.seeded(t, r.srv.URL)
	s2 := be.open(t, dsn)
	const calls = 12
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call(t, []*binding.Store{s1, s2}[i%2], b, fmt.Sprintf("c-%02d", i))
		}()
	}
	wg.Wait()
	d1 := start(t, s1, local(fastRetries...), nil)
	d2 := start(t, s2, local(fastRetries...), nil)
	got := r.wait(4*calls, 60*time.Second)
	time.Sleep(200 * time.Millisecond)
	got = r.delivered()
	r.requireSound()
	require.Len(t, got, 4*calls, "each event once")
	requireInOrder(t, got, 4)
	seen := map[string]bool{}
	for _, e := range got {
		require.False(t, seen[e.ID], e.ID)
		seen[e.ID] = true
	}
	var n1, n2 int64
	require.Eventually(t, func() bool {
		n1, n2 = sum(d1.Counts()), sum(d2.Counts())
		return n1+n2 == 4*calls
	}, 10*time.Second, 10*time.Millisecond, "every attempt counted once")
	t.Logf("node 1 delivered %d, node 2 %d", n1, n2)
}

func sum(m map[[2]string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// TestBindingEndsSwept: the dispatcher's sweep reports a binding whose
// lifetime ran out as binding.ended, once, and delivers it; a release is
// reported at once by the store.
func TestBindingEndsSwept(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	s, _, b := backends[0].seeded(t, r.srv.URL)
	ctx := context.Background()
	req := binding.CreateRequest{Merchant: "m1", Order: "o-2", Consignee: consignee, OrderStatus: "shipped", TTL: time.Hour}
	short, err := s.CreateBinding(ctx, req, time.Now().Add(-2*time.Hour))
	require.NoError(t, err)
	start(t, s, local(), nil)
	_, err = s.Release(ctx, b.ID, time.Now())
	require.NoError(t, err)
	got := r.wait(2, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	got = r.delivered()
	require.Len(t, got, 2)
	reasons := map[string]string{}
	for _, e := range got {
		require.Equal(t, "binding.ended", e.Type)
		require.Equal(t, 1, e.Sequence)
		reasons[e.Data["binding"].(string)] = e.Data["reason"].(string)
	}
	require.Equal(t, map[string]string{b.ID: "released", short.ID: "expired"}, reasons)
	require.False(t, strings.Contains(got[0].raw, `"call_id"`))
	r.requireSound()
}
