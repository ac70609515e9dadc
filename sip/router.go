package sip

import (
	"context"
	"errors"
	"time"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/protection"
)

// What signalling needs from the rest of vnum comes in four roles, so
// that each part of sip depends on the one it uses only: digest
// authentication on Accounts, routing a new call on Directory, the
// call's record on Recorder, and the registrar's bindings on
// Registrations. The binding package implements them all;
// cmd/vnum wires it in as a Router. Every method takes a context that
// carries the caller's deadline: a store that does not answer in time
// must return the context's error rather than hold the call.

// storeTimeout is store.timeout: it bounds every store call made for a
// request or a call, so that a store that stalls never holds a handler
// or a call while SIP timers run; a store slower than that is short
// (frontdoor.StoreShort), and a new call gets 503 at once.
type storeTimeout time.Duration

// ctx is the context of one store call.
func (t storeTimeout) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, time.Duration(t))
}

// Accounts is the role authentication needs: the digest secrets of
// merchants' SIP logins (RFC 3261 §22, RFC 7616).
type Accounts interface {
	// Account returns the digest secrets of a SIP login, or ErrUnknownAccount.
	Account(ctx context.Context, user string) (Account, error)
}

// Directory is the role that routes a new call: the host-number pool, the
// bindings behind it, the call back's party, and the rules phone numbers
// follow.
type Directory interface {
	// IsHostNumber reports whether x (national form, 11 digits) is in the pool.
	IsHostNumber(ctx context.Context, x string) (bool, error)
	// Resolve finds the active binding (x, ext). merchant is the calling
	// account's merchant, or "" for a trunk caller. It returns
	// ErrInvalidExtension for a wrong, foreign or unknown extension and
	// ErrExpired for one that expired or was released and is in quarantine.
	Resolve(ctx context.Context, x, ext, merchant string) (Target, error)
	// Callback finds what a consignee reaches by calling x back from the
	// number bound to it (README "SIP behaviour in short"): the binding, and whoever last reached
	// the consignee through it, an account or a PSTN number as its record
	// says, or else the merchant's accounts. It returns
	// ErrInvalidExtension when caller has no active binding on x.
	Callback(ctx context.Context, x, caller string) (Callback, error)
	// PhoneNumber validates a phone number from outside (a PSTN caller's
	// From user, a remembered last caller about to be dialled) by the rules
	// consignee numbers follow (11-digit Chinese mobile or E.164) and
	// returns it normalised to E.164, or an error when it is not one.
	PhoneNumber(raw string) (string, error)
}

// Recorder is the role that keeps each call's record (README "CDRs and billing"): one row
// per call attempt, written when it starts, kept current while it goes on,
// completed when it ends.
type Recorder interface {
	// StartCall writes the CDR row when a call starts.
	StartCall(ctx context.Context, cdr *CDR) error
	// UpdateCall records progress (binding resolved, ringing, answered)
	// and the dialogs of the legs answered so far, which the recorder
	// keeps with the open record (never in it: leg B's names the
	// consignee) until the call ends, for the node's next start to hang
	// them up should the node die first.
	UpdateCall(ctx context.Context, cdr *CDR, legs Legs) error
	// RefreshCall keeps an answered call's row current while it goes on
	// (README "CDRs and billing"): alive is the last time the call was known to be up, and the
	// recorder stores the talk time until then, so that a crash loses at
	// most the time since the last refresh.
	RefreshCall(ctx context.Context, cdr *CDR, alive time.Time) error
	// EndCall completes the CDR row; the recorder computes talk time and fee.
	EndCall(ctx context.Context, cdr *CDR) error
}

// Registrations is the role of vnum's registrar (RFC 3261 §10): where
// each account's softphone registered, kept in the store so that a call
// back reaches it whichever node takes the call (README "N nodes behind
// Kamailio's dispatcher").
type Registrations interface {
	// SaveRegistration records or renews a registration.
	SaveRegistration(ctx context.Context, r Registration) error
	// DeleteRegistration removes an account's registration, if any.
	DeleteRegistration(ctx context.Context, user string) error
	// LookupRegistration returns an account's registration unless it is
	// missing or expired at now.
	LookupRegistration(ctx context.Context, user string, now time.Time) (Registration, bool, error)
}

// Spool keeps the ends of calls that the store would not take on the
// node's own disk, so that they outlive the process: the next start
// writes them. The spool package implements it.
type Spool interface {
	// Put keeps cdr's end; it returns once the end is on disk.
	Put(cdr CDR) error
	// Done notes that the end of the record id is in the store.
	Done(id string) error
	// Path names where the ends are kept, for the operator.
	Path() string
}

// Protector is the role of consignee protection: may a call ring its
// consignee now (counting it when it may), the block the consignee makes
// with their keys, and the merchant's clip for the notice the consignee
// hears before the bridge. A Router that also implements it protects
// consignees; one that does not (the defaults of tests) lets every call
// ring and bridges as soon as B answers.
type Protector interface {
	// TakeRing decides whether the call ring describes may ring its
	// consignee now, under the policy in force for the binding's
	// merchant, and counts it when it may. A refused call never rings B.
	TakeRing(ctx context.Context, ring callrec.Ring) (protection.Decision, error)
	// BlockCaller blocks the caller of a call through binding id for its
	// consignee, as the consignee asked with their keys; call is the
	// call's CDR id, which the merchant's consignee.blocked event carries.
	// created reports a new block.
	BlockCaller(ctx context.Context, id, call string, kind callrec.CallerKind, caller string) (created bool, err error)
	// Announcement returns the samples (8 kHz) of the merchant's clip, or
	// nil when it has none.
	Announcement(ctx context.Context, merchant string) ([]int16, error)
}

// RecordingChoice is the role that says whether a merchant asked for its
// calls to be recorded (the record of its own protection), for
// recording.mode merchant on the calls consignee protection does not
// decide: a consignee's call back. A Router that does not implement it
// has no call back recorded in that mode.
type RecordingChoice interface {
	// RecordsCalls reports whether merchant asked for its calls to be
	// recorded.
	RecordsCalls(ctx context.Context, merchant string) (bool, error)
}

// Router is all four roles together, what a Server is built with.
type Router interface {
	Accounts
	Directory
	Recorder
	Registrations
}

// Account is a merchant's SIP login as digest authentication needs it.
type Account = callrec.Account

// Target is the binding a dialled (X, E) resolved to.
type Target = callrec.Target

// Callback is where a consignee's call back to X goes: to the account or
// PSTN number that last reached them through the binding, or else to the
// merchant's accounts.
type Callback = callrec.Callback

// CDR is the call record signalling fills in as a call goes on.
type CDR = callrec.Record

// Legs are the dialogs of a call's legs as the store keeps them while the
// call goes on (legs.go makes and reads their text).
type Legs = callrec.Legs

// Errors the Router returns.
var (
	ErrUnknownAccount   = errors.New("unknown account")
	ErrInvalidExtension = errors.New("invalid extension")
	ErrExpired          = errors.New("binding expired")
)
