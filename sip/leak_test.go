package sip

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/stretchr/testify/require"
)

// vnumGoroutines counts the goroutines running vnum's signalling or media
// code (a frame of package sip or media), leaving out the test's own
// goroutines and its simulated phones and carriers.
func vnumGoroutines() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "vnum/sip/sipua.") || strings.Contains(g, "testing.tRunner") ||
			strings.Contains(g, "vnum/sip.newScriptedCarrier") || strings.Contains(g, "vnum/sip.Test") {
			continue
		}
		if strings.Contains(g, "github.com/vnum/vnum/sip.") || strings.Contains(g, "github.com/vnum/vnum/media.") {
			n++
		}
	}
	return n
}

// maxGoroutinesPerCall is what a bridged call costs in goroutines of
// vnum's own: the goroutine that holds the established call (the INVITE
// handler that set it up has returned) and the RTP reader of each leg.
// The RTCP sockets of all calls are read by one goroutine (sharedGoroutines).
// Timers (max duration, media timeout, CDR refresh) wait on the
// runtime's timer heap, not on goroutines, and leg B's fork goroutine ends
// with the answer.
const maxGoroutinesPerCall = 1 + 2

// sharedGoroutines are vnum's goroutines that calls start and share: the
// RTCP reader of the media ports.
const sharedGoroutines = 1

// TestGoroutinesPerBridgedCall bridges several calls at once and counts
// vnum's goroutines while they are up: at most maxGoroutinesPerCall each,
// and none left once they ended.
func TestGoroutinesPerBridgedCall(t *testing.T) {
	e, sc := scriptedEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	idle := vnumGoroutines()
	idleAll := runtime.NumGoroutine()
	const calls = 4
	var legs []*sipgo.DialogClientSession
	var carrier []*carrierCall
	for i := 0; i < calls; i++ {
		d, _ := e.dialAndKey(ctx, testHost, testExt)
		cc := sc.next(t)
		open := make(chan struct{})
		close(open)
		cc.answerWith(open, sc.SDP())
		legs, carrier = append(legs, d), append(carrier, cc)
	}
	require.Eventually(t, func() bool {
		n := 0
		for _, c := range e.srv.Calls() {
			if c.State == "bridged" {
				n++
			}
		}
		return n == calls
	}, 20*time.Second, 10*time.Millisecond)
	// Goroutines of the setup (prompt players, forks, transactions) wind
	// down; the count settles at what the bridged calls hold.
	var perCall int
	require.Eventually(t, func() bool {
		perCall = (vnumGoroutines() - idle - sharedGoroutines + calls - 1) / calls
		return perCall <= maxGoroutinesPerCall
	}, 10*time.Second, 20*time.Millisecond, "vnum goroutines per bridged call above the bound")
	t.Logf("vnum goroutines per bridged call: %d; all goroutines of the process (peers included): %d per call",
		perCall, (runtime.NumGoroutine()-idleAll)/calls)

	for _, d := range legs {
		require.NoError(t, d.Bye(ctx))
	}
	for range legs {
		require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	}
	for _, cc := range carrier {
		cc.requireEnded(t)
	}
	e.waitNoCalls()
	require.Eventually(t, func() bool { return vnumGoroutines() <= idle }, 10*time.Second, 20*time.Millisecond,
		"vnum goroutines: idle %d, after the calls %d", idle, vnumGoroutines())
}
