package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/events"
)

// startEvents starts the node's delivery workers for call events
// (README "Call events"); the node stops them when it closes, after its
// calls have drained.
func startEvents(c *config.Config, store *binding.Store, log *slog.Logger) *events.Dispatcher {
	return events.Start(events.Options{Store: store, Config: c.Events, Log: log,
		UserAgent: "vnum/" + version})
}

// stopEvents lets the attempts in flight finish for up to events.timeout,
// then cuts them: an attempt cut short is tried again on the schedule.
func stopEvents(d *events.Dispatcher, c *config.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Events.Timeout+time.Second)
	defer cancel()
	d.Stop(ctx)
}

// eventCollectors are the metrics of call events: vnum_events_total{type,
// outcome}, this node's delivery attempts, and vnum_events_pending, the
// events waiting in the outbox for every node.
func eventCollectors(stats callStats) []prometheus.Collector {
	var cs []prometheus.Collector
	if stats.events != nil {
		cs = append(cs, eventsCollector{
			desc: prometheus.NewDesc("vnum_events_total",
				"Delivery attempts of call events by this node, by event type and outcome: delivered (a 2xx), "+
					"retried (failed, tried again after the next wait of events.retries), failed (the last attempt failed: "+
					"the event is kept until retried by hand).",
				[]string{"type", "outcome"}, nil),
			counts: stats.events,
		})
	}
	if stats.eventsPending != nil {
		cs = append(cs, pendingCollector{
			desc: prometheus.NewDesc("vnum_events_pending",
				"Call events waiting in the outbox to be delivered, on every node (due, waiting for a retry, "+
					"or behind an earlier event of their call).", nil, nil),
			pending: stats.eventsPending,
		})
	}
	return cs
}

// eventsCollector reads vnum_events_total from the dispatcher's counts at
// each scrape.
type eventsCollector struct {
	desc   *prometheus.Desc
	counts func() map[[2]string]int64
}

func (c eventsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c eventsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.counts()
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), k[0], k[1])
	}
	// Every series exists from the start at zero, so that a rate over it
	// reads 0 rather than nothing before the first attempt.
	for _, typ := range binding.EventTypes() {
		for _, outcome := range []string{events.OutcomeDelivered, events.OutcomeRetried, events.OutcomeFailed} {
			if _, ok := counts[[2]string{typ, outcome}]; !ok {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, 0, typ, outcome)
			}
		}
	}
}

// pendingScrapeTimeout bounds the store's count at a scrape.
const pendingScrapeTimeout = 2 * time.Second

// pendingCollector counts the pending events in the store at each
// scrape; a store that does not answer in time leaves the series out of
// that scrape rather than fail it.
type pendingCollector struct {
	desc    *prometheus.Desc
	pending func(context.Context) (int, error)
}

func (c pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), pendingScrapeTimeout)
	defer cancel()
	n, err := c.pending(ctx)
	if err != nil {
		slog.Debug("metrics: counting pending events", "error", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
