package sip

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo"
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

// TestKPIsUnansweredCalls: a busy consignee and one who does not answer
// are seizures not answered, with a post-dial delay and no answer delay
// or talk time; wrong extensions and silence in the IVR count as such,
// and seize nothing.
func TestKPIsUnansweredCalls(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		carrier string
		digits  string
		tweak   func(*Options)
		want    map[string]float64
	}{
		{name: "busy", carrier: "busy", digits: testExt, want: map[string]float64{
			"vnum_leg_b_seizures_total{route=trunk}":                                         1,
			"vnum_leg_b_answered_total{route=trunk}":                                         0,
			"vnum_post_dial_delay_seconds{route=trunk}":                                      1,
			"vnum_answer_delay_seconds{route=trunk}":                                         0,
			"vnum_talk_time_seconds{}":                                                       0,
			"vnum_calls_ended_total{caller=account,direction=to_consignee,disposition=busy}": 1,
			"vnum_ivr_outcomes_total{outcome=valid}":                                         1,
		}},
		{name: "no answer", carrier: "ring", digits: testExt, tweak: func(o *Options) { o.RingTimeout = time.Second },
			want: map[string]float64{
				"vnum_leg_b_seizures_total{route=trunk}":                                              1,
				"vnum_leg_b_answered_total{route=trunk}":                                              0,
				"vnum_post_dial_delay_seconds{route=trunk}":                                           1,
				"vnum_answer_delay_seconds{route=trunk}":                                              0,
				"vnum_talk_time_seconds{}":                                                            0,
				"vnum_calls_ended_total{caller=account,direction=to_consignee,disposition=no_answer}": 1,
			}},
		{name: "invalid extension", carrier: "answer", digits: "9999", want: map[string]float64{
			"vnum_leg_b_seizures_total{route=trunk}":                                                      0,
			"vnum_ivr_outcomes_total{outcome=invalid}":                                                    3,
			"vnum_ivr_outcomes_total{outcome=valid}":                                                      0,
			"vnum_calls_ended_total{caller=account,direction=to_consignee,disposition=invalid_extension}": 1,
		}},
		{name: "timeout", carrier: "answer", tweak: func(o *Options) { o.FirstDigitTimeout = 200 * time.Millisecond },
			want: map[string]float64{
				"vnum_leg_b_seizures_total{route=trunk}":   0,
				"vnum_ivr_outcomes_total{outcome=timeout}": 3,
				"vnum_ivr_outcomes_total{outcome=invalid}": 0,
				"vnum_dtmf_digits_total{method=rfc4733}":   0,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, tc.carrier, tc.tweak)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			d, err := e.phone.Call(ctx, e.vnum, testHost)
			require.NoError(t, err)
			to, err := sipua.MediaAddr(d.InviteResponse.Body())
			require.NoError(t, err)
			if tc.digits != "" {
				require.NoError(t, sipua.SendDigits(e.phone.RTP, to, 101, tc.digits))
				if tc.digits != testExt {
					for i := 1; i <= 2; i++ {
						e.waitLogged("invalid extension", i)
						require.NoError(t, sipua.SendDigits(e.phone.RTP, to, 101, tc.digits))
					}
				}
			}
			require.Eventually(t, func() bool { return d.LoadState() == sip.DialogStateEnded }, 30*time.Second, 20*time.Millisecond)
			e.router.waitEnded(t)
			e.waitNoCalls()
			requireSeries(t, e.scrape(), tc.want)
		})
	}
}

// TestKPIsSIPInfoDigits: an extension keyed as SIP INFO counts under
// sip_info, and nothing under rfc4733.
func TestKPIsSIPInfoDigits(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := e.phone.Call(ctx, e.vnum, testHost)
	require.NoError(t, err)
	sendInfoDigits(ctx, t, d, testExt)
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	e.router.waitEnded(t)
	e.waitNoCalls()
	requireSeries(t, e.scrape(), map[string]float64{
		"vnum_dtmf_digits_total{method=sip_info}": 4,
		"vnum_dtmf_digits_total{method=rfc4733}":  0,
		"vnum_dtmf_digits_total{method=inband}":   0,
		"vnum_ivr_outcomes_total{outcome=valid}":  1,
	})
}

// sendInfoDigits keys digits in the caller's dialog as SIP INFO
// (application/dtmf-relay).
func sendInfoDigits(ctx context.Context, t *testing.T, d *sipgo.DialogClientSession, digits string) {
	t.Helper()
	for _, r := range digits {
		req := sip.NewRequest(sip.INFO, d.InviteResponse.Contact().Address)
		req.SetBody([]byte("Signal=" + string(r) + "\r\nDuration=160\r\n"))
		req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
		res, err := d.Do(ctx, req)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode)
	}
}
