package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/events"
	"github.com/vnum/vnum/sip/sipua"
)

// webhookSecret signs the events of the merchant of these tests.
const webhookSecret = "whsec-integration-0123456789"

// eventReceiver is the merchant's endpoint: an HTTP server on a loopback
// port of the test's, which checks each request as a merchant would.
type eventReceiver struct {
	mu   sync.Mutex
	got  []deliveredEvent
	bad  []string
	srv  *http.Server
	done chan struct{}
}

// deliveredEvent is one event as the receiver took it.
type deliveredEvent struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Merchant string         `json:"merchant"`
	CallID   string         `json:"call_id"`
	Sequence int            `json:"sequence"`
	Data     map[string]any `json:"data"`
	raw      string
}

// startReceiver serves on 127.0.0.1:port until the test ends.
func startReceiver(t *testing.T, port int) *eventReceiver {
	t.Helper()
	r := &eventReceiver{done: make(chan struct{})}
	letGo(port)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = r.srv.Close()
		<-r.done
	})
	return r
}

func (r *eventReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err == nil {
		err = checkSignature(req.Header.Get("Vnum-Signature"), body)
	}
	var ev deliveredEvent
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad = append(r.bad, err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ev.raw = string(body)
	r.got = append(r.got, ev)
	w.WriteHeader(http.StatusOK)
}

// checkSignature checks a delivery's Vnum-Signature as a receiver must
// (events.Verify: the HMAC of "<t>.<body>", t within five minutes).
func checkSignature(header string, body []byte) error {
	return events.Verify(webhookSecret, header, body, time.Now())
}

// events returns what the receiver took, in the order it came.
func (r *eventReceiver) events() []deliveredEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]deliveredEvent(nil), r.got...)
}

// TestEventsSurviveACrash: the merchant's receiver is down while calls
// happen; vnum is killed with SIGKILL with one call still up and started
// again, then the receiver comes up: every event of every call arrives,
// signed, each call's in order (the cut call ends interrupted), and none
// holds B.
func TestEventsSurviveACrash(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			eventsSurviveACrash(t, driver)
		})
	}
}

func eventsSurviveACrash(t *testing.T, driver string) {
	hookPort := freePort(t) // held, not listening: the receiver is down
	e := newEnv(t, `events:
  timeout: 2s
  retries: [1s, 2s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s]
  allow_private: true
`)
	carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
	require.NoError(t, err)
	t.Cleanup(carrier.Close)
	e.setYAML(fmt.Sprintf("sip:127.0.0.1:%d;", e.carrierPort), fmt.Sprintf("sip:127.0.0.1:%d;", carrier.Addr.Port()))
	e.setYAML("  timeout: 20s", "  timeout: 120s") // no RTP flows: the media timeout must not end the call
	e.useStore(clusterStore(t, driver))
	b := e.seed()
	out := e.run("merchant", "webhook", merchantID, "--url", fmt.Sprintf("http://127.0.0.1:%d/vnum/events", hookPort),
		"--secret", webhookSecret)
	require.Contains(t, out, "secret ****")
	require.NotContains(t, out, webhookSecret)
	e.startServe()

	phone, err := sipua.NewSoftphone(account, password, nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	vnum := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(e.sipPort))
	const calls = 4
	for i := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		d, err := phone.Call(ctx, vnum, hostNumber)
		require.NoError(t, err)
		to, err := sipua.MediaAddr(d.InviteResponse.Body())
		require.NoError(t, err)
		require.NoError(t, sipua.SendDigits(phone.RTP, to, 101, b.Extension))
		_, err = carrier.NextSession(20 * time.Second)
		require.NoError(t, err, "vnum never bridged call %d to the carrier", i)
		if i < calls-1 {
			require.NoError(t, d.Bye(ctx))
		}
		cancel()
	}
	// The last call is up and answered; the others ended.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, raw := e.cdrs()
		ended, answered := 0, 0
		for _, r := range rows {
			if r.ended() {
				ended++
			}
			if r.AnsweredAt != nil {
				answered++
			}
		}
		if len(rows) == calls && ended == calls-1 && answered == calls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d calls answered, %d ended: %s", calls, calls-1, raw)
		}
		time.Sleep(200 * time.Millisecond)
	}

	require.NoError(t, syscall.Kill(e.serve.cmd.Process.Pid, syscall.SIGKILL))
	_, err = e.serve.wait(10 * time.Second)
	require.NoError(t, err)
	e.serve = startProc(t, "vnum serve (restarted)", e.dir, filepath.Join(e.dir, "vnum-serve-restarted.log"),
		cleanEnviron(), e.bin, "--config", e.config, "serve")
	e.waitSIP(20 * time.Second)

	var pending []map[string]any
	require.NoError(t, json.Unmarshal([]byte(e.run("event", "list", "--status", "pending", "--format", "json")), &pending))
	require.Len(t, pending, 4*calls, "every event waits in the outbox while the receiver is down")

	r := startReceiver(t, hookPort)
	deadline = time.Now().Add(60 * time.Second)
	for len(r.events()) < 4*calls {
		if time.Now().After(deadline) {
			t.Fatalf("want %d events within 60 s of the receiver coming up, have %d:\n%s",
				4*calls, len(r.events()), e.run("event", "list"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	got := r.events()
	r.mu.Lock()
	require.Empty(t, r.bad, "requests that failed the merchant's checks")
	r.mu.Unlock()
	require.Len(t, got, 4*calls, "each event once")

	byCall := map[string][]deliveredEvent{}
	for _, ev := range got {
		require.Equal(t, merchantID, ev.Merchant)
		require.NotContains(t, ev.raw, consignee, "an event shows B")
		require.NotContains(t, ev.raw, "86"+consignee, "an event shows B")
		byCall[ev.CallID] = append(byCall[ev.CallID], ev)
	}
	require.Len(t, byCall, calls)
	interrupted := 0
	for id, evs := range byCall {
		var types []string
		for i, ev := range evs {
			require.Equal(t, i+1, ev.Sequence, "call %s: events out of order", id)
			types = append(types, ev.Type)
		}
		require.Equal(t, []string{"call.started", "call.ringing", "call.answered", "call.ended"}, types, "call %s", id)
		require.Equal(t, b.Extension, evs[0].Data["extension"])
		require.Equal(t, orderID, evs[0].Data["order"])
		if evs[3].Data["disposition"] == "interrupted" {
			interrupted++
		} else {
			require.Equal(t, "answered", evs[3].Data["disposition"])
		}
	}
	require.Equal(t, 1, interrupted, "the call the crash cut ends interrupted")
	var delivered []map[string]any
	require.Eventually(t, func() bool {
		require.NoError(t, json.Unmarshal([]byte(e.run("event", "list", "--status", "delivered", "--format", "json")), &delivered))
		return len(delivered) == 4*calls
	}, 10*time.Second, 200*time.Millisecond)
	e.waitAdmin("/metrics", 10*time.Second, func(status int, body string) bool {
		return status == http.StatusOK && strings.Contains(body, "vnum_events_pending 0") &&
			strings.Contains(body, `vnum_events_total{outcome="delivered",type="call.ended"} 4`)
	}, "the events' metrics")
}
