package sip

import (
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// registry owns the calls in progress: each by its leg A dialog ID, each
// of its leg B INVITEs (forks) by Call-ID, and the drain at shutdown. Its
// lock guards these maps only; what a call is doing is its own goroutine's
// business (see call).
type registry struct {
	mu       sync.Mutex
	byDialog map[string]callerRef // leg A dialog ID → call
	forks    map[string]forkRef   // leg B Call-ID → call and fork
	closed   bool                 // drain was called
	wg       sync.WaitGroup       // one per registered call
}

// callerRef is a call as its leg A's requests find it: its handle, and
// the dialog of its INVITE, which never changes, so that a handler can
// pass an ACK or a BYE to sipgo without asking the call.
type callerRef struct {
	call   *callHandle
	dialog *sipgo.DialogServerSession
}

// forkRef is one INVITE of leg B: the call it belongs to and its dialog,
// which never changes once sent, so that a handler can answer the fork's
// BYE without asking the call.
type forkRef struct {
	call   *callHandle
	dialog calleeDialog
}

func newRegistry() *registry {
	return &registry{byDialog: make(map[string]callerRef), forks: make(map[string]forkRef)}
}

// add registers a call under its leg A dialog ID. It reports false once
// draining: the call must then be refused.
func (r *registry) add(dialogID string, c callerRef) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Under mu, so that no call registers (wg.Add) after drain's Wait starts.
	if r.closed {
		return false
	}
	r.byDialog[dialogID] = c
	r.wg.Add(1)
	return true
}

// addFork registers one INVITE of a call's leg B.
func (r *registry) addFork(c *callHandle, d calleeDialog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forks[d.request().CallID().Value()] = forkRef{call: c, dialog: d}
}

// remove forgets a call that ended, and its forks.
func (r *registry) remove(dialogID string, c *callHandle) {
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

// legA returns the call a request of a leg A dialog is in.
func (r *registry) legA(req *sip.Request) (callerRef, bool) {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return callerRef{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.byDialog[id]
	return c, ok
}

// legB returns the fork of leg B a request is in, by its Call-ID.
func (r *registry) legB(req *sip.Request) (forkRef, bool) {
	cid := req.CallID()
	if cid == nil {
		return forkRef{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.forks[cid.Value()]
	return f, ok
}

// drain stops registering calls.
func (r *registry) drain() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

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
func (r *registry) all() []*callHandle {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*callHandle, 0, len(r.byDialog))
	for _, c := range r.byDialog {
		out = append(out, c.call)
	}
	return out
}

// count returns the number of calls in progress.
func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byDialog)
}
