// Package callrec is the vocabulary that signalling (package sip) and the
// store (package binding) share about calls: who may call (Account), where
// a dialled number or a call back leads (Target, Callback), and the record
// of each call attempt (Record) with its typed values. It is a leaf: it
// imports nothing of vnum's, so both sides can speak it without knowing
// each other, and cmd/vnum wires them with no field-by-field copy.
package callrec

// Disposition is how a call attempt ended (README "CDRs and billing"). Its values are the
// strings the JSON and CSV exports carry.
type Disposition string

// Dispositions of a call (README "CDRs and billing").
const (
	// DispositionAnswered is a call the consignee (or callback party) answered.
	DispositionAnswered Disposition = "answered"
	// DispositionBusy is a call leg B refused as busy (486, 600).
	DispositionBusy Disposition = "busy"
	// DispositionNoAnswer is a call nobody answered within calls.ring_timeout.
	DispositionNoAnswer Disposition = "no_answer"
	// DispositionCancelled is a call the caller gave up before it was answered.
	DispositionCancelled Disposition = "cancelled"
	// DispositionFailed is a call that failed for any other reason.
	DispositionFailed Disposition = "failed"
	// DispositionInvalidExtension is a call whose extension never resolved.
	DispositionInvalidExtension Disposition = "invalid_extension"
	// DispositionExpired is a call to an (X, E) in quarantine.
	DispositionExpired Disposition = "expired"
	// DispositionRejected is a call leg B declined (403, 603, …).
	DispositionRejected Disposition = "rejected"
	// DispositionInterrupted is a call a crash cut; the next start closes it.
	DispositionInterrupted Disposition = "interrupted"

	// The refusals of consignee protection (package protection): each ends
	// the call before B rings, except DispositionDeclined.

	// DispositionQuietHours is a call refused in the consignee's quiet hours.
	DispositionQuietHours Disposition = "quiet_hours"
	// DispositionCapped is a call refused because a cap on calls that
	// ring the consignee was reached.
	DispositionCapped Disposition = "capped"
	// DispositionBlocked is a call from a caller the consignee, or an
	// operator, blocked.
	DispositionBlocked Disposition = "blocked"
	// DispositionDeclined is a call the consignee declined after the
	// notice (a key, or none in time), or blocked by keying the block
	// key in answer to it.
	DispositionDeclined Disposition = "declined"
	// DispositionRestricted is a call a one-way binding does not take.
	DispositionRestricted Disposition = "restricted"
)

// Free reports whether calls that end so are never billed, whatever
// their times say: protection refused them before B rang, or B declined
// them after the notice, which is not talk time.
func (d Disposition) Free() bool {
	switch d {
	case DispositionQuietHours, DispositionCapped, DispositionBlocked, DispositionDeclined, DispositionRestricted:
		return true
	}
	return false
}

// HangupBy is the side that ended a call (README "CDRs and billing", hangup_by).
type HangupBy string

// Sides that end a call.
const (
	// HangupCaller is leg A: the merchant, courier or calling-back consignee.
	HangupCaller HangupBy = "caller"
	// HangupCallee is leg B: the party vnum dialled.
	HangupCallee HangupBy = "callee"
	// HangupSystem is vnum itself: timeouts, errors, shutdown, a crash.
	HangupSystem HangupBy = "system"
)

// Direction says which way a call goes through a binding (README "CDRs and billing").
type Direction string

// Call directions.
const (
	// DirectionToConsignee is a call from a merchant or courier to B.
	DirectionToConsignee Direction = "to_consignee"
	// DirectionCallback is a call from B back through X (README "SIP behaviour in short", callback).
	DirectionCallback Direction = "callback"
)

// Calls says which calls a binding takes: both ways (the default), or one
// way only.
type Calls string

// The ways a binding may take calls.
const (
	// CallsBoth takes calls to the consignee and the consignee's calls back.
	CallsBoth Calls = "both"
	// CallsToConsignee takes calls to the consignee and refuses their
	// calls back.
	CallsToConsignee Calls = "to_consignee"
	// CallsFromConsignee takes the consignee's calls back and refuses
	// every call to them.
	CallsFromConsignee Calls = "from_consignee"
)

// Allows reports whether a binding that takes calls c takes a call in
// direction d. An empty c is CallsBoth (records made before bindings
// could be one-way).
func (c Calls) Allows(d Direction) bool {
	switch c {
	case CallsToConsignee:
		return d != DirectionCallback
	case CallsFromConsignee:
		return d != DirectionToConsignee
	}
	return true
}

// CallerKind says what a record's Caller is. A call back dials the last
// caller by its kind, so the kind is stored with the record when the call
// starts rather than guessed later from the string: a PSTN number can look
// like an account's user name and the other way round.
type CallerKind string

// Kinds of caller.
const (
	// CallerUnknown is a caller of no known kind (none, or a record written
	// before kinds were stored that held neither an account nor a number).
	// A call back never dials it.
	CallerUnknown CallerKind = ""
	// CallerAccount is a merchant's SIP login; Caller is its user name.
	CallerAccount CallerKind = "account"
	// CallerNumber is a PSTN caller from a trunk; Caller is its number in
	// E.164 form, or "" when it sent none that validates.
	CallerNumber CallerKind = "number"
	// CallerConsignee is B calling back; Caller is the word "consignee",
	// never B's number, which no record merchants read may hold.
	CallerConsignee CallerKind = "consignee"
)

// Account is a merchant's SIP login as digest authentication needs it.
type Account struct {
	// User is the SIP user name, unique across merchants.
	User string
	// Merchant owns the account.
	Merchant string
	// HA1MD5 is hex(MD5(user:realm:password)) (RFC 2617 §3.2.2.2).
	HA1MD5 string
	// HA1SHA256 is hex(SHA-256(user:realm:password)) (RFC 7616 §3.4.2).
	HA1SHA256 string
}

// Target is the binding a dialled (X, E) resolved to.
type Target struct {
	// BindingID is the binding's identifier.
	BindingID string
	// Merchant owns the binding.
	Merchant string
	// Order is the merchant's order identifier.
	Order string
	// Host is X, 5 to 15 digits.
	Host string
	// Extension is E.
	Extension string
	// Consignee is B in E.164 form (+8613800138000). It never goes into a
	// Record.
	Consignee string
	// Calls says which ways the binding takes calls: a call it does not
	// allow (Calls.Allows) is refused as DispositionRestricted.
	Calls Calls
	// Plain is set when the directory found, with the binding, that
	// neither its merchant's own protection nor any block for its
	// consignee applies: consignee protection then weighs the call by the
	// platform's policy alone, and needs nothing more from the store
	// unless that policy counts calls. The zero value asks the store.
	Plain bool
}

// Ring is a call about to ring a consignee, as consignee protection
// weighs and counts it: through which binding, from which caller.
type Ring struct {
	// BindingID is the binding the call resolved.
	BindingID string
	// CallerKind is CallerAccount (a merchant's SIP login, which counts
	// as its merchant, all its accounts together) or CallerNumber (a PSTN
	// caller, which counts as its number).
	CallerKind CallerKind
	// Caller is the account's user, or the PSTN caller's number in E.164
	// ("" for one that sent none, all of which count as one caller).
	Caller string
	// CDR is the call's record, kept with the count to trace it.
	CDR string
	// Plain is the binding's Target.Plain, as the directory found it
	// when the call resolved it.
	Plain bool
}

// Callback is where a consignee's call back to X goes (README "SIP behaviour in short"): to the
// account or PSTN number that last reached them through the binding, or
// else to the merchant's accounts. At most one of Account, Number and
// Accounts is set.
type Callback struct {
	Target
	// Account is the merchant's SIP login that last reached the consignee.
	Account string
	// Number is the PSTN caller that last reached the consignee (E.164).
	Number string
	// Accounts are the merchant's logins, rung when neither is known.
	Accounts []string
}

// Legs are the SIP dialogs of a call's two legs as signalling keeps them,
// so that a node starting again after a crash can end the legs its calls
// left up (a BYE in each dialog) instead of leaving them to the peers'
// own timers. The text of each is signalling's own; the store keeps it
// with the call's open record and forgets it when the record ends. Leg
// B's dialog names the consignee (its Request-URI and To), and so does
// leg A's on a call back: Legs are never part of a Record, an export, an
// API answer or a log line.
type Legs struct {
	// A is the caller's leg, "" until vnum answered it.
	A string
	// B is the leg vnum dialled, "" until it answered.
	B string
}
