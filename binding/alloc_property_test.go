package binding

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// allocSeed replays a failed run of TestAllocationProperty.
var allocSeed = flag.Uint64("alloc-seed", 0, "seed of TestAllocationProperty (0: random)")

// TestAllocationProperty runs thousands of random creates and releases on
// a few host numbers while a clock moves on, against a model of which
// (X, E) are in use (active, or ended less than the quarantine ago). After
// every create it checks README "Bindings": the new E is at Hamming distance two or
// more from every E in use on its X, and it is not an E still in
// quarantine. A full pool must really be full.
func TestAllocationProperty(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		const (
			hosts      = 2
			quarantine = 6 * time.Hour
			steps      = 5000
			capacity   = 100 // a 3-digit distance-2 code
		)
		seedVal := *allocSeed
		if seedVal == 0 {
			seedVal = uint64(time.Now().UnixNano())
		}
		t.Logf("seed %d (replay with -alloc-seed=%d)", seedVal, seedVal)
		rng := rand.New(rand.NewPCG(seedVal, seedVal>>1))

		s, _ := be.open(t, WithPolicy(Policy{TTL: time.Hour, Quarantine: quarantine, ExtensionDigits: 3}))
		var xs []string
		for i := range hosts {
			xs = append(xs, fmt.Sprintf("1700000000%d", i+1))
		}
		seed(t, s, xs...)
		ctx := context.Background()

		// lastEnd is when the latest binding on each (X, E) ended or ends.
		lastEnd := map[string]map[string]time.Time{}
		for _, x := range xs {
			lastEnd[x] = map[string]time.Time{}
		}
		type live struct {
			id, host, ext string
			end           time.Time
		}
		var active []live
		now := t0
		inUse := func(x, e string) bool {
			end, ok := lastEnd[x][e]
			return ok && now.Before(end.Add(quarantine))
		}
		var created, released, exhausted, reused int
		for step := range steps {
			now = now.Add(time.Duration(rng.IntN(120)) * time.Second)
			switch op := rng.IntN(100); {
			case op < 60:
				req := shipped(fmt.Sprintf("p-%d", step))
				req.TTL = time.Duration(60+rng.IntN(6*60)) * time.Minute
				b, err := s.CreateBinding(ctx, req, now)
				if errors.Is(err, ErrPoolExhausted) {
					exhausted++
					for _, x := range xs {
						n := 0
						for e := range lastEnd[x] {
							if inUse(x, e) {
								n++
							}
						}
						require.Equal(t, capacity, n, "step %d: pool exhausted but %s has only %d in use", step, x, n)
					}
					continue
				}
				require.NoError(t, err, "step %d", step)
				require.False(t, inUse(b.Host, b.Extension), "step %d: %s,%s given out while in use or quarantine",
					step, b.Host, b.Extension)
				for e := range lastEnd[b.Host] {
					if inUse(b.Host, e) {
						require.GreaterOrEqual(t, hamming(e, b.Extension), 2, "step %d: on %s, %s is one digit from %s",
							step, b.Host, b.Extension, e)
					}
				}
				if _, ok := lastEnd[b.Host][b.Extension]; ok {
					reused++
				}
				lastEnd[b.Host][b.Extension] = b.ExpiresAt
				active = append(active, live{b.ID, b.Host, b.Extension, b.ExpiresAt})
				created++
			case op < 99 && len(active) > 0:
				i := rng.IntN(len(active))
				l := active[i]
				active = append(active[:i], active[i+1:]...)
				_, err := s.Release(ctx, l.id, now)
				if !now.Before(l.end) {
					require.ErrorIs(t, err, ErrEnded, "step %d: releasing an expired binding", step)
					continue
				}
				require.NoError(t, err, "step %d", step)
				lastEnd[l.host][l.ext] = now
				released++
			default:
				now = now.Add(time.Duration(rng.IntN(60)) * time.Minute)
			}
		}
		t.Logf("%d created, %d released, %d refused as exhausted, %d (X, E) reused after quarantine",
			created, released, exhausted, reused)
		require.Greater(t, created, steps/3, "the run exercised allocation")
		require.Positive(t, released, "the run exercised release")
		require.Positive(t, exhausted, "the run filled the pool")
		require.Positive(t, reused, "the run exercised reuse after the quarantine")
	})
}
