package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vnum/vnum/binding"
)

// Store operations the router times, one label value each. They are the
// store calls a call or a registration waits for.
const (
	opAccount            = "account"
	opIsHostNumber       = "is_host_number"
	opResolve            = "resolve"
	opCallback           = "callback"
	opStartCall          = "start_call"
	opUpdateCall         = "update_call"
	opRefreshCall        = "refresh_call"
	opEndCall            = "end_call"
	opSaveRegistration   = "save_registration"
	opDeleteRegistration = "delete_registration"
	opLookupRegistration = "lookup_registration"
	opTakeRing           = "take_ring"
	opBlockCaller        = "block_caller"
	opAnnouncement       = "announcement"
)

var storeOps = []string{opAccount, opIsHostNumber, opResolve, opCallback, opStartCall, opUpdateCall,
	opRefreshCall, opEndCall, opSaveRegistration, opDeleteRegistration, opLookupRegistration,
	opTakeRing, opBlockCaller, opAnnouncement}

// storeMetrics times the store calls signalling makes through the router
// (vnum_store_duration_seconds{op}) and counts those that failed
// (vnum_store_errors_total{op,kind}). A slow store shows here before
// calls get 503 as store_slow. A nil *storeMetrics records nothing.
type storeMetrics struct {
	duration *prometheus.HistogramVec
	errs     *prometheus.CounterVec
}

// storeBuckets spread from a local SQLite read (well under a millisecond)
// to store.timeout's default (2 s), beyond which the call was refused.
var storeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5}

func newStoreMetrics() *storeMetrics {
	m := &storeMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "vnum", Name: "store_duration_seconds",
			Help:    "How long the store took to answer the calls signalling makes (a failed one included), by operation.",
			Buckets: storeBuckets,
		}, []string{"op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "vnum", Name: "store_errors_total",
			Help: "Store calls made by signalling that failed, by operation and kind: unavailable (no answer within store.timeout, " +
				"a lost or refused connection, a lock not had in time: the call got 503) or fault (any other error: 500, logged). " +
				"An answer such as an unknown extension is no error.",
		}, []string{"op", "kind"}),
	}
	// Every series exists from the start at zero, so that a rate over
	// it is 0 rather than absent before the first call.
	for _, op := range storeOps {
		m.duration.WithLabelValues(op)
		m.errs.WithLabelValues(op, "unavailable")
		m.errs.WithLabelValues(op, "fault")
	}
	return m
}

// observe records one store call of op that began at start and ended with
// err, the store's own error (before the router turns it into sip's).
func (m *storeMetrics) observe(op string, start time.Time, err error) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	switch {
	case err == nil, isStoreAnswer(err):
	case binding.Unavailable(err):
		m.errs.WithLabelValues(op, "unavailable").Inc()
	default:
		m.errs.WithLabelValues(op, "fault").Inc()
	}
}

// isStoreAnswer reports whether err is the store's answer to the question
// (no such account or binding, a binding expired, a record already
// finished) rather than a failure to answer.
func isStoreAnswer(err error) bool {
	for _, answer := range []error{binding.ErrNotFound, binding.ErrNoBinding, binding.ErrExpired, binding.ErrCDRFinished} {
		if errors.Is(err, answer) {
			return true
		}
	}
	return false
}

func (m *storeMetrics) collectors() []prometheus.Collector {
	if m == nil {
		return nil
	}
	return []prometheus.Collector{m.duration, m.errs}
}

// poolStatsMaxAge is how long one count of the pool serves scrapes: the
// count reads the bindings table, and the pool fills over days, not
// seconds. poolStatsRetry is how long a count that failed is not tried
// again, so that scrapes of a node whose store is down do not each wait
// store.timeout for it.
const (
	poolStatsMaxAge = 30 * time.Second
	poolStatsRetry  = 5 * time.Second
)

// poolCollector reads how full the host-number pool is
// (binding.Store.PoolStats) at a scrape, at most once per poolStatsMaxAge,
// with timeout as its bound. A store that does not answer leaves the
// series out of the scrapes of the next poolStatsRetry (the store's own
// alerts say why) rather than fail them.
type poolCollector struct {
	stats   func(context.Context, time.Time) (binding.PoolStats, error)
	now     func() time.Time
	timeout time.Duration

	numbers, active, quarantined, capacity *prometheus.Desc

	mu       sync.Mutex
	last     binding.PoolStats
	at       time.Time // when last was read; zero: never
	failedAt time.Time // when a count last failed; zero: never
}

func newPoolCollector(stats func(context.Context, time.Time) (binding.PoolStats, error), timeout time.Duration) *poolCollector {
	return &poolCollector{
		stats: stats, now: time.Now, timeout: timeout,
		numbers: prometheus.NewDesc("vnum_numbers", "Host numbers in the pool.", nil, nil),
		active: prometheus.NewDesc("vnum_bindings_active",
			"Bindings that calls reach now (the whole store's: every node reports the same).", nil, nil),
		quarantined: prometheus.NewDesc("vnum_bindings_quarantined",
			"Bindings that ended within binding.quarantine: their extension is not given out again yet.", nil, nil),
		capacity: prometheus.NewDesc("vnum_binding_capacity",
			"Extensions the pool holds at ivr.extension_digits; binding creates fail with \"pool exhausted\" once active plus quarantined bindings reach it.", nil, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.numbers
	ch <- c.active
	ch <- c.quarantined
	ch <- c.capacity
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	p, ok := c.read()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.numbers, prometheus.GaugeValue, float64(p.Numbers))
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(p.Active))
	ch <- prometheus.MustNewConstMetric(c.quarantined, prometheus.GaugeValue, float64(p.Quarantined))
	ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(p.Capacity))
}

// read returns the pool's count, read again once the last is older than
// poolStatsMaxAge; none for poolStatsRetry after a count failed.
// Concurrent scrapes wait for one read.
func (c *poolCollector) read() (binding.PoolStats, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.failedAt.IsZero() && now.Sub(c.failedAt) < poolStatsRetry {
		return binding.PoolStats{}, false
	}
	if !c.at.IsZero() && now.Sub(c.at) < poolStatsMaxAge {
		return c.last, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	p, err := c.stats(ctx, now)
	if err != nil {
		slog.Debug("metrics: counting the pool", "error", err)
		c.failedAt = now
		return binding.PoolStats{}, false
	}
	c.last, c.at, c.failedAt = p, now, time.Time{}
	return p, true
}
