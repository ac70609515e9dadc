package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// trunkMissesDown is how many keepalives in a row the outbound trunk may
// leave unanswered before it counts as down.
const trunkMissesDown = 3

// maxKeepaliveWait bounds how long one keepalive waits for its answer:
// an OPTIONS over UDP would otherwise retransmit for 32 s (Timer F),
// longer than the keepalive's period.
const maxKeepaliveWait = 5 * time.Second

// trunkWatch is the outbound trunk's health as vnum sees it: OPTIONS sent
// every keepalive period (RFC 3261 §11; any final response, even a
// refusal, says the carrier is there), and the trunk counted down after
// trunkMissesDown in a row went unanswered. An operator hears of it three
// ways: /readyz, the vnum_trunk_up metric, and one WARN line when it goes
// down and one when it comes back.
type trunkWatch struct {
	up atomic.Bool

	mu        sync.Mutex
	misses    int
	lastErr   error
	downSince time.Time
}

func newTrunkWatch() *trunkWatch {
	w := &trunkWatch{}
	w.up.Store(true) // until keepalives say otherwise
	return w
}

// answered takes one keepalive's outcome (err nil: a response came) and
// reports whether the trunk went down or came back with it.
func (w *trunkWatch) answered(err error, now time.Time) (wentDown, cameBack bool, misses int, downFor time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.misses, w.lastErr = 0, nil
		if !w.up.Load() {
			w.up.Store(true)
			return false, true, 0, now.Sub(w.downSince)
		}
		return false, false, 0, 0
	}
	w.misses++
	w.lastErr = err
	if w.misses >= trunkMissesDown && w.up.Load() {
		w.up.Store(false)
		w.downSince = now
		return true, false, w.misses, 0
	}
	return false, false, w.misses, 0
}

// state says whether the trunk is up and, when it is down, why.
func (w *trunkWatch) state() (bool, string) {
	if w.up.Load() {
		return true, ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	why := fmt.Sprintf("%d keepalives in a row unanswered since %s", w.misses, w.downSince.UTC().Format(time.RFC3339))
	if w.lastErr != nil {
		why += ": " + w.lastErr.Error()
	}
	return false, why
}

// keepAlive sends the outbound trunk an OPTIONS every period until ctx
// ends.
func (t *trunk) keepAlive(ctx context.Context, tc *trunkConf, health *trunkWatch) {
	tick := time.NewTicker(tc.keepalive)
	defer tick.Stop()
	for {
		err := t.ping(ctx, tc, min(tc.keepalive, maxKeepaliveWait))
		if ctx.Err() != nil {
			return
		}
		wentDown, cameBack, misses, downFor := health.answered(err, time.Now())
		switch {
		case wentDown:
			t.log.Warn("trunk down: keepalives unanswered", "trunk", tc.outbound, "misses", misses, "error", err)
		case cameBack:
			t.log.Warn("trunk up again", "trunk", tc.outbound, "down_for", downFor.Round(time.Second).String())
		case err != nil:
			t.log.Debug("trunk keepalive unanswered", "misses", misses, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// errNoTrunkAnswer is a keepalive that got no response in time.
var errNoTrunkAnswer = errors.New("no answer to OPTIONS")

// ping sends one OPTIONS to the outbound trunk and waits up to wait for
// any final response.
func (t *trunk) ping(ctx context.Context, tc *trunkConf, wait time.Duration) error {
	uri := *tc.uri.Clone()
	uri.User = ""
	req := sip.NewRequest(sip.OPTIONS, uri)
	if dest := t.dest(); dest != "" {
		req.SetDestination(dest)
	}
	if tr, ok := tc.uri.UriParams.Get("transport"); ok && tr != "" {
		req.SetTransport(strings.ToUpper(tr))
	}
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "vnum", Host: t.host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := t.client.Do(ctx, req)
	switch {
	case err == nil:
		t.log.Debug("trunk keepalive", "status", res.StatusCode)
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w within %s", errNoTrunkAnswer, wait)
	}
	return err
}

// up reports whether the outbound trunk answers its keepalives (always
// true when they are off), and why not when it does not. A reload to
// another trunk starts a fresh watch.
func (t *trunk) up() (bool, string) {
	t.keepMu.Lock()
	w := t.health
	t.keepMu.Unlock()
	return w.state()
}

// serve starts the keepalives, sent with client from host, for as long
// as ctx lasts.
func (t *trunk) serve(ctx context.Context, client *sipgo.Client, host string) {
	t.keepMu.Lock()
	t.client, t.host, t.serveCtx = client, host, ctx
	t.keepMu.Unlock()
	t.restartKeepalive()
}

// restartKeepalive (re)starts the keepalives of the trunk as configured
// now, for as long as the server serves.
func (t *trunk) restartKeepalive() {
	tc := t.conf.Load()
	t.keepMu.Lock()
	defer t.keepMu.Unlock()
	if t.stopKeep != nil {
		t.stopKeep()
		t.stopKeep = nil
	}
	if t.serveCtx == nil || tc.host == "" || tc.keepalive <= 0 {
		return
	}
	ctx, stop := context.WithCancel(t.serveCtx)
	t.stopKeep = stop
	go t.keepAlive(ctx, tc, t.health)
}

// stopKeepalive stops the keepalives.
func (t *trunk) stopKeepalive() {
	t.keepMu.Lock()
	defer t.keepMu.Unlock()
	if t.stopKeep != nil {
		t.stopKeep()
		t.stopKeep = nil
	}
}
