package binding

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// BenchmarkCreateBinding measures binding creation (allocation of a random
// extension at Hamming distance ≥ 2, in one immediate transaction) on a
// pool of 200 host numbers.
func BenchmarkCreateBinding(b *testing.B) {
	s, _ := openTest(b)
	hosts := make([]string, 200)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("170%08d", i)
	}
	seed(b, s, hosts...)
	ctx := context.Background()
	now := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, err := s.CreateBinding(ctx, shipped(fmt.Sprintf("o-%d", i)), now)
		require.NoError(b, err)
	}
}

// BenchmarkResolve measures the per-call lookup of (X, E) among 5,000
// bindings.
func BenchmarkResolve(b *testing.B) {
	s, _ := openTest(b)
	seed(b, s, "17000000001", "17000000002", "17000000003", "17000000004", "17000000005")
	ctx := context.Background()
	now := time.Now()
	var last *Binding
	for i := 0; i < 5000; i++ {
		bd, err := s.CreateBinding(ctx, shipped(fmt.Sprintf("o-%d", i)), now)
		require.NoError(b, err)
		last = bd
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, err := s.Resolve(ctx, last.Host, last.Extension, "m1", now)
		require.NoError(b, err)
	}
}

// BenchmarkCDRLifecycle measures the store writes of one answered call:
// the row at start, the answer, the end with its fee.
func BenchmarkCDRLifecycle(b *testing.B) {
	s, _ := openTest(b)
	seed(b, s)
	ctx := context.Background()
	rates, err := ParseRates("0.02", "0.00018")
	require.NoError(b, err)
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := &callrec.Record{CallID: fmt.Sprint(i), Host: "17000000001", Direction: callrec.DirectionToConsignee, Caller: "alice", StartedAt: start}
		require.NoError(b, s.StartCDR(ctx, c))
		c.AnsweredAt = start.Add(time.Second)
		require.NoError(b, s.UpdateCDR(ctx, c))
		c.EndedAt = start.Add(40 * time.Second)
		require.NoError(b, s.FinishCDR(ctx, c, rates))
	}
}

// BenchmarkResolveParallel is BenchmarkResolve with many calls looking up
// at once, as INVITEs do under load: what it measures is mostly how the
// connection pool copes (a pool that keeps too few idle connections opens
// and closes a SQLite connection for nearly every query).
func BenchmarkResolveParallel(b *testing.B) {
	s, _ := openTest(b)
	seed(b, s, "17000000001", "17000000002")
	ctx := context.Background()
	now := time.Now()
	var last *Binding
	for i := 0; i < 500; i++ {
		bd, err := s.CreateBinding(ctx, shipped(fmt.Sprintf("o-%d", i)), now)
		require.NoError(b, err)
		last = bd
	}
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Resolve(ctx, last.Host, last.Extension, "m1", now); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(s.db.Stats().MaxIdleClosed)/float64(b.N), "conns-closed/op")
}
