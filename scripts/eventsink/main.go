// Command eventsink is a merchant's webhook for load tests (make bench,
// BENCH_MODE=events): it answers every delivery 204 after a fixed delay,
// as a slow receiver would, and checks each as a merchant should: the
// Vnum-Signature under the secret (events.Verify), no id delivered twice,
// each call's events in sequence order. GET /stats answers what it saw as one JSON
// object; it prints its address, then serves until SIGTERM.
//
//	eventsink -secret S -delay 200ms -addr-file sink.addr
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/vnum/vnum/events"
)

// stats is what the sink saw.
type stats struct {
	// Received counts the requests, Delivered the distinct event ids.
	Received  int `json:"received"`
	Delivered int `json:"delivered"`
	// Duplicates counts requests with an id seen before (at least once
	// delivery allows them); BadSignature those whose signature failed.
	Duplicates   int `json:"duplicates"`
	BadSignature int `json:"bad_signature"`
	// OutOfOrder counts events of a call whose sequence was not the one
	// after the last the sink had of that call.
	OutOfOrder int `json:"out_of_order"`
	// Concurrent is the most requests the sink held at once.
	Concurrent int `json:"concurrent"`
}

type sink struct {
	secret string
	delay  time.Duration

	mu       sync.Mutex
	st       stats
	inflight int
	seen     map[string]bool
	lastSeq  map[string]int
}

func main() {
	secret := flag.String("secret", "", "the webhook's secret")
	delay := flag.Duration("delay", 200*time.Millisecond, "how long to wait before answering each delivery")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	addrFile := flag.String("addr-file", "", "write the address listened on to this file")
	flag.Parse()
	if len(*secret) < 16 {
		log.Fatal("eventsink: -secret of at least 16 characters is required")
	}
	s := &sink{secret: *secret, delay: *delay, seen: map[string]bool{}, lastSeq: map[string]int{}}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("eventsink: %v", err)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o600); err != nil {
			log.Fatalf("eventsink: %v", err)
		}
	}
	fmt.Println(ln.Addr().String())
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", s.event)
	mux.HandleFunc("GET /stats", s.stats)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Printf("eventsink: shutdown: %v", err)
		}
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("eventsink: %v", err)
	}
}

// event takes one delivery: checked, counted, answered after the delay.
func (s *sink) event(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.inflight++
	s.st.Concurrent = max(s.st.Concurrent, s.inflight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.mu.Unlock()
	}()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	var ev struct {
		ID       string `json:"id"`
		CallID   string `json:"call_id"`
		Sequence int    `json:"sequence"`
	}
	ok := events.Verify(s.secret, r.Header.Get(events.SignatureHeader), body, time.Now()) == nil &&
		json.Unmarshal(body, &ev) == nil
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Received++
	if !ok {
		s.st.BadSignature++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if s.seen[ev.ID] {
		s.st.Duplicates++
	} else {
		s.seen[ev.ID] = true
		s.st.Delivered++
		if ev.CallID != "" {
			if ev.Sequence != s.lastSeq[ev.CallID]+1 {
				s.st.OutOfOrder++
			}
			s.lastSeq[ev.CallID] = max(s.lastSeq[ev.CallID], ev.Sequence)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *sink) stats(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(st); err != nil {
		log.Printf("eventsink: stats: %v", err)
	}
}
