package main

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/sip"
)

// TestStoreMetricsThroughRouter: every store call the router makes is
// timed under its op; an answer (an unknown extension, an unknown
// account) is no error, a store that does not answer in time is
// unavailable and a closed store a fault.
func TestStoreMetricsThroughRouter(t *testing.T) {
	ctx := context.Background()
	store, err := binding.Open(ctx, binding.DriverSQLite, filepath.Join(t.TempDir(), "vnum.db"))
	require.NoError(t, err)
	require.NoError(t, store.AddMerchant(ctx, "m1", "Shop One"))
	require.NoError(t, store.AddNumbers(ctx, "17000000001"))
	m := newStoreMetrics()
	r := &router{store: store, now: time.Now, metrics: m}
	count := func(op string) uint64 { return observations(t, m, op) }
	errs := func(op, kind string) float64 {
		t.Helper()
		return gathered(t, m.errs, map[string]string{"op": op, "kind": kind})
	}

	ok, err := r.IsHostNumber(ctx, "17000000001")
	require.NoError(t, err)
	require.True(t, ok)
	_, err = r.Resolve(ctx, "17000000001", "1234", "")
	require.ErrorIs(t, err, sip.ErrInvalidExtension)
	_, err = r.Account(ctx, "nobody")
	require.ErrorIs(t, err, sip.ErrUnknownAccount)
	require.EqualValues(t, 1, count(opIsHostNumber))
	require.EqualValues(t, 1, count(opResolve))
	require.EqualValues(t, 1, count(opAccount))
	require.Zero(t, errs(opResolve, "fault")+errs(opResolve, "unavailable"), "an unknown extension is an answer")
	require.Zero(t, errs(opAccount, "fault")+errs(opAccount, "unavailable"), "so is an unknown account")

	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	_, err = r.Resolve(expired, "17000000001", "1234", "")
	require.ErrorIs(t, err, sip.ErrStoreSlow)
	require.EqualValues(t, 1, errs(opResolve, "unavailable"))

	require.NoError(t, store.Close())
	_, err = r.IsHostNumber(ctx, "17000000001")
	require.Error(t, err)
	require.EqualValues(t, 1, errs(opIsHostNumber, "fault"))
	require.EqualValues(t, 2, count(opIsHostNumber))

	var none *storeMetrics
	none.observe(opResolve, time.Now(), errors.New("not recorded"))
	require.Empty(t, none.collectors())
}

// observations returns how many times op's latency was observed.
func observations(t *testing.T, m *storeMetrics, op string) uint64 {
	t.Helper()
	return uint64(gathered(t, m.duration, map[string]string{"op": op}))
}

// gathered gathers c and returns the value of its sample with exactly the
// labels want: a counter's count, a histogram's number of observations.
func gathered(t *testing.T, c prometheus.Collector, want map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if !maps.Equal(got, want) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	require.Failf(t, "no sample", "%v", want)
	return 0
}

// TestPoolCollector: the pool is counted at most once per
// poolStatsMaxAge however often Prometheus scrapes, and a store that does
// not answer leaves the pool's series out of the scrapes of the next
// poolStatsRetry instead of failing them, or making each wait.
func TestPoolCollector(t *testing.T) {
	now := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	reads := 0
	fail := false
	c := newPoolCollector(func(ctx context.Context, at time.Time) (binding.PoolStats, error) {
		reads++
		_, ok := ctx.Deadline()
		require.True(t, ok, "the count is bounded by store.timeout")
		require.Equal(t, now, at)
		if fail {
			return binding.PoolStats{}, context.DeadlineExceeded
		}
		return binding.PoolStats{Numbers: 2, Active: 5, Quarantined: 7, Capacity: 2000}, nil
	}, time.Second)
	c.now = func() time.Time { return now }
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	values := func() map[string]float64 {
		t.Helper()
		fams, err := reg.Gather()
		require.NoError(t, err)
		out := map[string]float64{}
		for _, f := range fams {
			out[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		}
		return out
	}
	want := map[string]float64{"vnum_numbers": 2, "vnum_bindings_active": 5, "vnum_bindings_quarantined": 7, "vnum_binding_capacity": 2000}
	require.Equal(t, want, values())
	now = now.Add(poolStatsMaxAge - time.Second)
	require.Equal(t, want, values())
	require.Equal(t, 1, reads, "a scrape within poolStatsMaxAge reuses the count")

	now = now.Add(time.Second)
	fail = true
	require.Empty(t, values(), "no count, no series")
	require.Equal(t, 2, reads)
	now = now.Add(poolStatsRetry - time.Second)
	fail = false
	require.Empty(t, values())
	require.Equal(t, 2, reads, "a failed count is not tried again at once")
	now = now.Add(time.Second)
	require.Equal(t, want, values())
	require.Equal(t, 3, reads)
}
