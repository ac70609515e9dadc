package events

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
)

// BenchmarkCallWritesWhileDelivering measures the store writes of one
// answered call of a merchant with a webhook (its row at start, the
// binding with the answer, the end: four events written in the same
// statements), with no delivery workers running ("idle"), and with a
// node's workers busy delivering to a receiver that takes 200 ms to
// answer each event ("receiver-200ms"). The call path only writes the
// outbox's rows: the two figures should be the same.
func BenchmarkCallWritesWhileDelivering(b *testing.B) {
	for _, be := range backends {
		for _, mode := range []string{"idle", "receiver-200ms"} {
			b.Run(be.driver+"/"+mode, func(b *testing.B) {
				s, _, bd := be.seeded(b, slowReceiver(b))
				// A backlog for the workers to chew on from the start.
				for i := range 200 {
					call(b, s, bd, fmt.Sprintf("warm-%d", i))
				}
				if mode != "idle" {
					d := start(b, s, config.Events{Timeout: 5 * time.Second, Retries: []time.Duration{time.Second},
						AllowPrivate: true}, nil)
					b.Cleanup(func() { b.ReportMetric(float64(sum(d.Counts())), "delivered") })
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					call(b, s, bd, fmt.Sprintf("c-%d", i))
				}
			})
		}
	}
}

// slowReceiver starts a merchant's endpoint that answers every event
// after 200 ms, and returns its URL.
func slowReceiver(b *testing.B) string {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(200 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(slow.Close)
	return slow.URL
}

// loadRate is the calls per second BenchmarkCallWritesUnderLoad offers,
// and loadTalk how long each call lasts between its answer and its end.
const (
	loadRate = 200
	loadTalk = 500 * time.Millisecond
)

// BenchmarkCallWritesUnderLoad offers b.N calls at loadRate calls/s, each
// in a goroutine of its own writing its record as signalling does (the
// row, the binding, the answer, the end after loadTalk), with events off
// (the merchant has no webhook: no event is written), written (the
// events are written, no worker delivers them) and on (a webhook that
// takes 200 ms to answer, and a node's delivery workers). It reports
// the calls' store writes' latency (p50 and p99, ms) and the events
// delivered: with events on the writes should take no longer, however
// busy the workers are.
func BenchmarkCallWritesUnderLoad(b *testing.B) {
	for _, be := range backends {
		for _, mode := range []string{"off", "written", "on"} {
			b.Run(be.driver+"/"+mode, func(b *testing.B) {
				s, _, bd := be.seeded(b, slowReceiver(b))
				var d *Dispatcher
				switch mode {
				case "on":
					d = start(b, s, config.Events{Timeout: 5 * time.Second, Retries: []time.Duration{time.Second},
						AllowPrivate: true}, nil)
				case "off":
					require.NoError(b, s.RemoveWebhook(context.Background(), "m1"))
				}
				var mu sync.Mutex
				var lat []time.Duration
				timed := func(f func()) {
					t0 := time.Now()
					f()
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
				b.ResetTimer()
				tick := time.NewTicker(time.Second / loadRate)
				defer tick.Stop()
				var wg sync.WaitGroup
				for i := 0; i < b.N; i++ {
					<-tick.C
					wg.Add(1)
					go func() {
						defer wg.Done()
						loadCall(b, s, bd, fmt.Sprintf("c-%d", i), timed)
					}()
				}
				wg.Wait()
				b.StopTimer()
				slices.Sort(lat)
				ms := func(q int) float64 { return float64(lat[(len(lat)-1)*q/100]) / float64(time.Millisecond) }
				b.ReportMetric(ms(50), "p50-ms")
				b.ReportMetric(ms(99), "p99-ms")
				if d != nil {
					b.ReportMetric(float64(sum(d.Counts())), "delivered")
				}
			})
		}
	}
}

// loadCall writes the record of one answered call through bd as
// signalling does, each write timed by timed.
func loadCall(b *testing.B, s *binding.Store, bd *binding.Binding, id string, timed func(func())) {
	ctx := context.Background()
	at := time.Now().UTC()
	c := &callrec.Record{ID: id, CallID: id + "@a", Merchant: "m1", Host: bd.Host, Direction: callrec.DirectionToConsignee,
		Caller: "alice", CallerKind: callrec.CallerAccount, StartedAt: at}
	var err error
	timed(func() { err = s.StartCDR(ctx, c) })
	if err != nil {
		b.Error(err)
		return
	}
	c.BindingID, c.Order, c.Extension = bd.ID, bd.Order, bd.Extension
	c.RingingAt = time.Now().UTC()
	timed(func() { err = s.UpdateCDR(ctx, c, callrec.Legs{}) })
	if err != nil {
		b.Error(err)
		return
	}
	c.AnsweredAt = time.Now().UTC()
	timed(func() { err = s.UpdateCDR(ctx, c, callrec.Legs{A: "a", B: "b"}) })
	if err != nil {
		b.Error(err)
		return
	}
	time.Sleep(loadTalk)
	c.EndedAt, c.HangupBy = time.Now().UTC(), callrec.HangupCaller
	timed(func() { err = s.FinishCDR(ctx, c, binding.Rates{}) })
	if err != nil {
		b.Error(err)
	}
}
