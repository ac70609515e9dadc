package events

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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
				slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					time.Sleep(200 * time.Millisecond)
					w.WriteHeader(http.StatusNoContent)
				}))
				b.Cleanup(slow.Close)
				s, _, bd := be.seeded(b, slow.URL)
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
