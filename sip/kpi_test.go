package sip

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// scrape gathers the server's KPIs, as /metrics would, and returns the
// value of every series by name and labels ("name{k=v,...}" in label
// order): a counter's count, a histogram's number of observations.
func (e *testEnv) scrape() map[string]float64 {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range e.srv.Metrics() {
		require.NoError(e.t, reg.Register(c))
	}
	mfs, err := reg.Gather()
	require.NoError(e.t, err)
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + "{"
			for i, l := range m.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += l.GetName() + "=" + l.GetValue()
			}
			key += "}"
			switch {
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// requireSeries checks the series named in want against a scrape; each
// must exist.
func requireSeries(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		require.True(t, ok, "no series %s", k)
		require.Equal(t, v, g, k)
	}
}

// sendWithGap sends n PCMU packets of ssrc to to, 20 ms apart, leaving
// out the sequence numbers in [from, from+gap).
func sendWithGap(ctx context.Context, t *testing.T, p *sipua.Peer, to netip.AddrPort, ssrc uint32, n, from, gap int) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := range n {
		if i >= from && i < from+gap {
			continue
		}
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(100 + i), Timestamp: uint32(160 * i), SSRC: ssrc},
			Payload: make([]byte, 160)}
		b, err := pkt.Marshal()
		require.NoError(t, err)
		_, err = p.RTP.WriteToUDPAddrPort(b, to)
		require.NoError(t, err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// TestKPIsAnsweredCall: one answered call, its extension keyed as RFC
// 4733, moves each KPI once: a seizure of the trunk and its answer, one
// post-dial and one answer delay, one talk time, one call ended answered
// from an account; the packets the carrier never sent count as lost on
// leg b only, as do the losses its RTCP reports; each leg's jitter is
// observed once, at the end.
func TestKPIsAnsweredCall(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := e.scrape()
	requireSeries(t, before, map[string]float64{
		"vnum_leg_b_seizures_total{route=trunk}":                                             0,
		"vnum_calls_ended_total{caller=account,direction=to_consignee,disposition=answered}": 0,
		"vnum_dtmf_digits_total{method=rfc4733}":                                             0,
		"vnum_rtp_packets_lost_total{leg=b}":                                                 0,
	})

	d, talk := e.dialAndKey(ctx, testHost, testExt)
	inv := nextInvite(t, e.carrier)
	ds := nextSession(t, e.carrier)
	bMedia, err := sipua.MediaAddr(inv.Body())
	require.NoError(t, err)
	go talk()
	require.Greater(t, sipua.CountRTP(e.carrier.RTP, 1500*time.Millisecond, 0xA11CE), 10, "carrier hears the caller")
	go sendWithGap(ctx, t, e.carrier.Peer, bMedia, 0xB0B, 30, 10, 5)
	require.Equal(t, 25, countRTPUntil(e.phone.RTP, 0xB0B, 25, 5*time.Second), "caller hears what the carrier sent")
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0xB0B, Reports: []rtcp.ReceptionReport{
		{SSRC: 0xA11CE, FractionLost: 20, TotalLost: 7, Jitter: 40},
	}}})
	require.NoError(t, err)
	_, err = e.carrier.RTP.WriteToUDPAddrPort(rr, netip.AddrPortFrom(bMedia.Addr(), bMedia.Port()+1))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.scrape()["vnum_rtcp_packets_lost_total{leg=b}"] == 7 },
		5*time.Second, 10*time.Millisecond, "the carrier's report reaches leg b's count")

	require.NoError(t, d.Bye(ctx))
	require.Eventually(t, func() bool { return ds.LoadState() == sip.DialogStateEnded }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	e.waitNoCalls()

	requireSeries(t, e.scrape(), map[string]float64{
		"vnum_leg_b_seizures_total{route=trunk}":                                             1,
		"vnum_leg_b_answered_total{route=trunk}":                                             1,
		"vnum_leg_b_seizures_total{route=softphone}":                                         0,
		"vnum_post_dial_delay_seconds{route=trunk}":                                          1,
		"vnum_answer_delay_seconds{route=trunk}":                                             1,
		"vnum_talk_time_seconds{}":                                                           1,
		"vnum_calls_ended_total{caller=account,direction=to_consignee,disposition=answered}": 1,
		"vnum_ivr_outcomes_total{outcome=valid}":                                             1,
		"vnum_ivr_outcomes_total{outcome=invalid}":                                           0,
		"vnum_dtmf_digits_total{method=rfc4733}":                                             4,
		"vnum_dtmf_digits_total{method=sip_info}":                                            0,
		"vnum_rtp_packets_lost_total{leg=b}":                                                 5,
		"vnum_rtp_packets_lost_total{leg=a}":                                                 0,
		"vnum_rtcp_packets_lost_total{leg=b}":                                                7,
		"vnum_rtcp_packets_lost_total{leg=a}":                                                0,
		"vnum_rtcp_fraction_lost{leg=b}":                                                     1,
		"vnum_rtcp_jitter_seconds{leg=b}":                                                    1,
		"vnum_rtp_jitter_seconds{leg=a}":                                                     1,
		"vnum_rtp_jitter_seconds{leg=b}":                                                     1,
	})
}

// countRTPUntil reads conn until it has n packets of ssrc or d passed,
// and returns how many it read.
func countRTPUntil(conn interface {
	SetReadDeadline(time.Time) error
	ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error)
}, ssrc uint32, n int, d time.Duration) int {
	got := 0
	buf := make([]byte, 1500)
	deadline := time.Now().Add(d)
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	for got < n {
		_ = conn.SetReadDeadline(deadline)
		k, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:k]) == nil && p.SSRC == ssrc {
			got++
		}
	}
	return got
}

// unansweredKPIs are the KPIs after a call to the consignee that ended
// with disposition before B answered (TestCallFailures): a seizure not
// answered, with a post-dial delay and no answer delay or talk time.
func unansweredKPIs(disposition string) map[string]float64 {
	return map[string]float64{
		"vnum_leg_b_seizures_total{route=trunk}":    1,
		"vnum_leg_b_answered_total{route=trunk}":    0,
		"vnum_post_dial_delay_seconds{route=trunk}": 1,
		"vnum_answer_delay_seconds{route=trunk}":    0,
		"vnum_talk_time_seconds{}":                  0,
		"vnum_ivr_outcomes_total{outcome=valid}":    1,
		"vnum_calls_ended_total{caller=account,direction=to_consignee,disposition=" + disposition + "}": 1,
	}
}

// ivrKPIs are the KPIs after a call whose three attempts in the IVR all
// ended with outcome (TestCallFailures): nothing seized.
func ivrKPIs(outcome string) map[string]float64 {
	want := map[string]float64{
		"vnum_leg_b_seizures_total{route=trunk}":                                                      0,
		"vnum_ivr_outcomes_total{outcome=valid}":                                                      0,
		"vnum_ivr_outcomes_total{outcome=invalid}":                                                    0,
		"vnum_ivr_outcomes_total{outcome=timeout}":                                                    0,
		"vnum_calls_ended_total{caller=account,direction=to_consignee,disposition=invalid_extension}": 1,
	}
	want["vnum_ivr_outcomes_total{outcome="+outcome+"}"] = 3
	return want
}

// infoKPIs are the KPIs after an extension keyed as SIP INFO
// (TestDirectExtensionAndInfo): its keys count under sip_info only.
var infoKPIs = map[string]float64{
	"vnum_dtmf_digits_total{method=sip_info}": 4,
	"vnum_dtmf_digits_total{method=rfc4733}":  0,
	"vnum_dtmf_digits_total{method=inband}":   0,
	"vnum_ivr_outcomes_total{outcome=valid}":  1,
}

// callbackKPIs are the KPIs after a consignee's call back answered on
// route (callback_test.go): one seizure of that route answered, ended as
// a callback from the consignee, and no IVR.
func callbackKPIs(route string) map[string]float64 {
	return map[string]float64{
		"vnum_leg_b_seizures_total{route=" + route + "}":                                   1,
		"vnum_leg_b_answered_total{route=" + route + "}":                                   1,
		"vnum_answer_delay_seconds{route=" + route + "}":                                   1,
		"vnum_talk_time_seconds{}":                                                         1,
		"vnum_ivr_outcomes_total{outcome=valid}":                                           0,
		"vnum_calls_ended_total{caller=consignee,direction=callback,disposition=answered}": 1,
	}
}
