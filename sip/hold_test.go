package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// TestHoldStopsMediaTimeout: a caller on hold (sendonly) may send no RTP,
// so media.timeout does not count it; once it resumes, the timeout counts
// again from the resume, and a caller that then stays silent ends the
// call (README "Bindings"), billed as answered and hung up by the system.
func TestHoldStopsMediaTimeout(t *testing.T) {
	const timeout = 800 * time.Millisecond
	e, sc := scriptedEnv(t, func(o *Options) { o.MediaTimeout = timeout })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, cc := bridged(t, e, sc, ctx, sc.SDP(sipua.PCMU))
	vnumB, err := sipua.MediaAddr(cc.req.Body())
	require.NoError(t, err)
	// B talks all along; the caller sends nothing after its digits.
	go func() { _ = sipua.SendAudio(ctx, sc.RTP, vnumB, 0xB0B, 1000) }()

	target := d.InviteResponse.Contact().Address
	reinvite := func(direction string) {
		t.Helper()
		req := sip.NewRequest(sip.INVITE, target)
		req.SetBody([]byte(strings.Replace(string(e.phone.SDP()), "a=sendrecv", "a="+direction, 1)))
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res, err := d.Do(ctx, req)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode)
		require.NoError(t, d.WriteRequest(sip.NewRequest(sip.ACK, target)))
	}
	reinvite("sendonly")
	// Three timeouts on hold without a packet from the caller.
	time.Sleep(3 * timeout)
	require.Equal(t, 1, e.srv.ActiveCalls(), "a held caller sending no RTP keeps the call")
	resumed := time.Now()
	reinvite("sendrecv")
	cdr := e.router.waitEnded(t)
	require.GreaterOrEqual(t, cdr.EndedAt.Sub(resumed), timeout, "the timeout counts from the resume, not from the caller's last packet")
	require.Equal(t, "answered", string(cdr.Disposition))
	require.Equal(t, "system", string(cdr.HangupBy), "media timeout after the resume")
	require.Greater(t, cdr.EndedAt.Sub(cdr.AnsweredAt), 3*timeout)
	cc.requireEnded(t)
	e.waitNoCalls()
}
