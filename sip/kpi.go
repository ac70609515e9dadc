package sip

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vnum/vnum/callrec"
)

// kpis are the telecom figures of calls an operator reads first: calls by
// how they ended, the answer-seizure ratio's parts, post-dial delay,
// answer delay, talk time and the IVR's outcomes. The call feeds them at
// the steps they measure; a nil *kpis (the script's unit tests) records
// nothing. The media's figures (loss, jitter, keys) are media.Metrics.
type kpis struct {
	ended       *prometheus.CounterVec
	seizures    *prometheus.CounterVec
	answered    *prometheus.CounterVec
	pdd         *prometheus.HistogramVec
	answerDelay *prometheus.HistogramVec
	talk        prometheus.Histogram
	ivr         *prometheus.CounterVec
}

// Routes of leg B, the route label: the carrier trunk, or an account's
// registered softphone (a callback to the merchant).
const (
	routeTrunk     = "trunk"
	routeSoftphone = "softphone"
)

// The outcomes of one extension in the IVR (or dialled directly), the
// outcome label of vnum_ivr_outcomes_total.
const (
	ivrValid   = "valid"   // an active binding the caller may reach
	ivrInvalid = "invalid" // wrong, foreign, released long ago: the same prompt
	ivrExpired = "expired" // an extension in quarantine
	ivrTimeout = "timeout" // nothing keyed in time
)

// Buckets in seconds. Post-dial delay: a PSTN call alerts in 2 to 5 s, a
// mobile one out of coverage takes 10 s and more. Answer delay: up to
// calls.ring_timeout (60 s by default) and beyond. Talk time: a
// courier's call lasts a minute or two, calls.max_duration ends any at 2 h.
var (
	pddBuckets    = []float64{.25, .5, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30}
	answerBuckets = []float64{1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120}
	talkBuckets   = []float64{5, 10, 15, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600, 7200}
)

// endedDispositions are the dispositions a call ends with on its node
// (interrupted is written by the next start, not by the call).
var endedDispositions = []callrec.Disposition{
	callrec.DispositionAnswered, callrec.DispositionBusy, callrec.DispositionNoAnswer,
	callrec.DispositionCancelled, callrec.DispositionFailed, callrec.DispositionInvalidExtension,
	callrec.DispositionExpired, callrec.DispositionRejected, callrec.DispositionQuietHours,
	callrec.DispositionCapped, callrec.DispositionBlocked, callrec.DispositionDeclined,
	callrec.DispositionRestricted,
}

func newKPIs() *kpis {
	k := &kpis{
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "vnum", Name: "calls_ended_total",
			Help: "Calls ended on this node, by the CDR's direction (to_consignee, callback), the kind of caller " +
				"(account: a merchant's softphone, number: a PSTN caller over the trunk, consignee: a callback) and the CDR's disposition.",
		}, []string{"direction", "caller", "disposition"}),
		seizures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "vnum", Name: "leg_b_seizures_total",
			Help: "Calls that sent leg B's INVITE (a seizure; a callback ringing several softphones counts once), by route: trunk or softphone. " +
				"Answer-seizure ratio: vnum_leg_b_answered_total / vnum_leg_b_seizures_total.",
		}, []string{"route"}),
		answered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "vnum", Name: "leg_b_answered_total",
			Help: "Seizures leg B answered (a 2xx; before any notice of consignee protection), by route.",
		}, []string{"route"}),
		pdd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "vnum", Name: "post_dial_delay_seconds",
			Help: "Post-dial delay: from leg B's INVITE to its first ringing or early media (18x), or to its answer or final failure " +
				"when nothing rang first, by route. A seizure the caller abandoned before any of these is not observed.",
			Buckets: pddBuckets,
		}, []string{"route"}),
		answerDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "vnum", Name: "answer_delay_seconds",
			Help:    "From leg B's INVITE to its answer (2xx), by route.",
			Buckets: answerBuckets,
		}, []string{"route"}),
		talk: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "vnum", Name: "talk_time_seconds",
			Help:    "Talk time of answered calls: from the bridge (after any notice) to the end, as the CDR bills it.",
			Buckets: talkBuckets,
		}),
		ivr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "vnum", Name: "ivr_outcomes_total",
			Help: "Extensions keyed in the IVR or dialled directly, by outcome: valid (an active binding), invalid (wrong, foreign " +
				"or unknown), expired (in quarantine), timeout (nothing keyed in time).",
		}, []string{"outcome"}),
	}
	// Every series exists from the start at zero, so that a rate over it
	// reads 0 rather than nothing before the first call.
	for _, dc := range [][2]string{
		{string(callrec.DirectionToConsignee), string(callrec.CallerAccount)},
		{string(callrec.DirectionToConsignee), string(callrec.CallerNumber)},
		{string(callrec.DirectionCallback), string(callrec.CallerConsignee)},
	} {
		for _, d := range endedDispositions {
			k.ended.WithLabelValues(dc[0], dc[1], string(d))
		}
	}
	for _, r := range []string{routeTrunk, routeSoftphone} {
		k.seizures.WithLabelValues(r)
		k.answered.WithLabelValues(r)
		k.pdd.WithLabelValues(r)
		k.answerDelay.WithLabelValues(r)
	}
	for _, o := range []string{ivrValid, ivrInvalid, ivrExpired, ivrTimeout} {
		k.ivr.WithLabelValues(o)
	}
	return k
}

// collectors are the metrics to register.
func (k *kpis) collectors() []prometheus.Collector {
	return []prometheus.Collector{k.ended, k.seizures, k.answered, k.pdd, k.answerDelay, k.talk, k.ivr}
}

// callEnded counts a call by its finished record, and its talk time when
// it was answered.
func (k *kpis) callEnded(cdr *CDR) {
	if k == nil {
		return
	}
	k.ended.WithLabelValues(string(cdr.Direction), string(cdr.CallerKind), string(cdr.Disposition)).Inc()
	if !cdr.AnsweredAt.IsZero() && !cdr.Disposition.Free() {
		k.talk.Observe(cdr.EndedAt.Sub(cdr.AnsweredAt).Seconds())
	}
}

// ivrOutcome counts one extension's outcome.
func (k *kpis) ivrOutcome(outcome string) {
	if k != nil {
		k.ivr.WithLabelValues(outcome).Inc()
	}
}

// seizure is one call's attempt on leg B as the KPIs time it, kept by
// the call's goroutine: the zero value (no attempt, or no kpis) records
// nothing.
type seizure struct {
	k      *kpis
	route  string
	sent   time.Time
	timed  bool // the post-dial delay is observed
	closed bool // answered or failed
}

// seize counts a call sending leg B's INVITEs to targets, now.
func (k *kpis) seize(targets []legBTarget) seizure {
	if k == nil {
		return seizure{}
	}
	route := routeSoftphone
	for _, t := range targets {
		if t.trunk {
			route = routeTrunk
		}
	}
	k.seizures.WithLabelValues(route).Inc()
	return seizure{k: k, route: route, sent: time.Now()}
}

// progress notes leg B's first ringing or early media.
func (s *seizure) progress() {
	if s.k == nil || s.timed || s.closed {
		return
	}
	s.timed = true
	s.k.pdd.WithLabelValues(s.route).Observe(time.Since(s.sent).Seconds())
}

// answer notes leg B's answer.
func (s *seizure) answer() {
	if s.k == nil || s.closed {
		return
	}
	s.progress()
	s.closed = true
	s.k.answered.WithLabelValues(s.route).Inc()
	s.k.answerDelay.WithLabelValues(s.route).Observe(time.Since(s.sent).Seconds())
}

// fail notes leg B's final failure.
func (s *seizure) fail() {
	if s.k == nil || s.closed {
		return
	}
	s.progress()
	s.closed = true
}
