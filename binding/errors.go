package binding

import "errors"

// Sentinel errors of the binding package; callers test them with errors.Is.
var (
	// ErrNotFound reports an unknown merchant, account, binding or CDR.
	ErrNotFound = errors.New("not found")
	// ErrExists reports a duplicate merchant, account or number, or a second
	// active binding for the same (merchant, order).
	ErrExists = errors.New("already exists")
	// ErrInvalid reports malformed input: an identifier, number or value.
	ErrInvalid = errors.New("invalid")
	// ErrNotShipped reports a binding request for an order that has not
	// shipped; nothing is stored.
	ErrNotShipped = errors.New("order not shipped")
	// ErrPoolExhausted reports that no host number has a free extension.
	ErrPoolExhausted = errors.New("pool exhausted")
	// ErrNoBinding reports a dialled (X, E) that is wrong, unknown, or
	// belongs to another merchant. It deliberately does not say which.
	ErrNoBinding = errors.New("no such binding")
	// ErrExpired reports a dialled (X, E) whose binding expired or was
	// released and is still in quarantine.
	ErrExpired = errors.New("binding expired")
	// ErrEnded reports an attempt to release or renew a binding that has
	// already expired or been released.
	ErrEnded = errors.New("binding already ended")
	// ErrTransition reports an order status that the order cannot move to
	// from where it is (shipped to closed, say); nothing changes.
	ErrTransition = errors.New("order status cannot move")
	// ErrInUse reports a host number that cannot leave the pool yet: it
	// carries bindings that are active or in quarantine.
	ErrInUse = errors.New("still in use")
	// ErrUnsupportedDriver reports a store driver this build does not have.
	ErrUnsupportedDriver = errors.New("driver not built in this version")
)

// ErrCDRFinished reports a FinishCDR on a call record that already ended.
var ErrCDRFinished = errors.New("call record already finished")

// ErrLeaseHeld reports that another process holds the lease of a node
// (see Store.TakeLease); the error is a *LeaseHeldError naming it.
var ErrLeaseHeld = errors.New("node lease held by another process")

// ErrLeaseLost reports that a lease this process held was taken by
// another process after it expired (see Lease.Renew).
var ErrLeaseLost = errors.New("node lease lost to another process")

// ErrNoStore reports a store that holds no vnum schema yet, refused by
// Open under MustExist: a SQLite file that does not exist or is empty, a
// PostgreSQL database without vnum's tables.
var ErrNoStore = errors.New("no vnum store there yet")
