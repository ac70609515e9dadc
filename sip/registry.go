package sip

import (
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo"
)

// registry owns the calls in progress: each by its leg A dialog ID, each
// of its leg B INVITEs (forks) by Call-ID, and the drain at shutdown. Its
// lock guards these maps only; what a call is doing is its own goroutine's
// business (see call).
type registry struct {
	mu       sync.Mutex
	byDialog map[string]*call   // leg A dialog ID → call
	forks    map[string]forkRef // leg B Call-ID → call and fork
	draining atomic.Bool
	wg       sync.WaitGroup // one per registered call
}

// forkRef is one INVITE of leg B: the call it belongs to and its dialog,
// which never changes once sent, so that a handler can answer the fork's
// BYE without asking the call.
type forkRef struct {
	call   *call
	dialog *sipgo.DialogClientSession
}

func newRegistry() *registry {
	return &registry{byDialog: make(map[string]*call), forks: make(map[string]forkRef)}
}

// add registers a call under its leg A dialog ID. It reports false while
// draining: the call must then be refused (README "SIP behaviour in short").
func (r *registry) add(dialogID string, c *call) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Under mu, so that no call registers (wg.Add) after drain's Wait starts.
	if r.draining.Load() {
		return false
	}
	r.byDialog[dialogID] = c
	r.wg.Add(1)
	return true
}

// addFork registers one INVITE of a call's leg B.
func (r *registry) addFork(c *call, d *sipgo.DialogClientSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forks[d.InviteRequest.CallID().Value()] = forkRef{call: c, dialog: d}
}

// remove forgets a call that ended, and its forks.
func (r *registry) remove(dialogID string, c *call) {
	r.mu.Lock()
	delete(r.byDialog, dialogID)
	for id, f := range r.forks {
		if f.call == c {
			delete(r.forks, id)
		}
	}
	r.mu.Unlock()
	r.wg.Done()
}

// byLegA returns the call of a leg A dialog ID, or nil.
func (r *registry) byLegA(dialogID string) *call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byDialog[dialogID]
}

// byLegB returns the fork a leg B Call-ID belongs to.
func (r *registry) byLegB(callID string) (forkRef, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.forks[callID]
	return f, ok
}

// drain stops registering calls.
func (r *registry) drain() {
	r.mu.Lock()
	r.draining.Store(true)
	r.mu.Unlock()
}

// isDraining reports whether the server shuts down.
func (r *registry) isDraining() bool { return r.draining.Load() }

// done returns a channel closed when every registered call has ended.
func (r *registry) done() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(ch)
	}()
	return ch
}

// all returns the calls in progress.
func (r *registry) all() []*call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*call, 0, len(r.byDialog))
	for _, c := range r.byDialog {
		out = append(out, c)
	}
	return out
}

// count returns the number of calls in progress.
func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byDialog)
}
