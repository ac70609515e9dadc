package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/spool"
)

// takeLease takes the lease of the store's node for this process, writes
// the ends of calls the node's spool kept (replaySpool) and closes the
// calls a crash of the node left open, returning the dialogs of their
// legs for the SIP server to end; only the lease's holder may (a second
// process of the node must not end the first one's calls in progress).
// The spooled ends go first, so that a call whose end was kept is billed
// as it ended, not closed as interrupted. A lease another live process
// holds is refused with one line naming node.id and that process.
func takeLease(ctx context.Context, s *binding.Store, node string, sp *spool.Spool, rates binding.Rates,
	log *slog.Logger) (*binding.Lease, map[string]callrec.Legs, error) {
	lease, err := s.TakeLease(ctx, thisHolder(), binding.LeaseOptions{Gone: holderGone})
	var held *binding.LeaseHeldError
	if errors.As(err, &held) {
		return nil, nil, leaseRefusal(held.State, s.Now())
	}
	if err != nil {
		return nil, nil, fmt.Errorf("node.id %q: %w", node, err)
	}
	args := []any{"node", node}
	if prev, ok := lease.Previous(); ok {
		how := "released"
		if prev.ReleasedAt.IsZero() {
			how = "not released (a crash)"
		}
		args = append(args, "previous_pid", prev.Holder.PID, "previous_host", prev.Holder.Host, "previous_lease", how)
	}
	spooled, err := replaySpool(ctx, s, sp, rates, log)
	if err != nil {
		return nil, nil, errors.Join(err, lease.Release(context.WithoutCancel(ctx)))
	}
	recovered, err := lease.RecoverInterrupted(ctx)
	if err != nil {
		return nil, nil, errors.Join(err, lease.Release(context.WithoutCancel(ctx)))
	}
	legs := 0
	for _, l := range recovered.Legs {
		if l.A != "" {
			legs++
		}
		if l.B != "" {
			legs++
		}
	}
	log.Info("took the node's lease", append(args, "spooled_ends_written", spooled,
		"interrupted_calls_closed", recovered.Closed, "legs_to_end", legs)...)
	return lease, recovered.Legs, nil
}

// leaseRefusal is the one line of a serve whose node.id another process
// serves.
func leaseRefusal(st binding.LeaseState, now time.Time) error {
	return fmt.Errorf("node.id %q is in use: vnum pid %d on host %s holds its lease in the store (renewed %s ago, "+
		"expires in %s unless renewed); stop that process first, or give this one another node.id",
		st.Node, st.Holder.PID, st.Holder.Host, seconds(now.Sub(st.RenewedAt)), seconds(st.ExpiresAt.Sub(now)))
}

// seconds is d for a person: whole seconds, never negative.
func seconds(d time.Duration) string {
	return max(d.Round(time.Second), 0).String()
}

// thisHolder names this process as a lease holder.
func thisHolder() binding.Holder {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return binding.Holder{Host: host, PID: os.Getpid(), Machine: machine()}
}

// machine names this kernel's boot and this process's PID namespace
// (Linux; "" elsewhere): processes with the same machine see the same
// process ids, so one can tell whether another's pid still runs.
var machine = sync.OnceValue(func() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + ns
})

// holderGone reports whether the holder of a lease that has not expired
// is known to be dead: a process of this machine (see machine) that no
// longer runs, such as a serve killed with SIGKILL. Its node then starts
// again at once instead of after the lease expires. A holder elsewhere,
// or whose pid is this process's own (the pid was reused), is not known
// dead: its lease is waited out.
func holderGone(st binding.LeaseState) bool {
	me := thisHolder()
	h := st.Holder
	if me.Machine == "" || h.Machine != me.Machine || h.PID <= 0 || h.PID == me.PID {
		return false
	}
	return !processRuns(h.PID)
}

// processRuns reports whether pid is a live process: /proc/PID/stat exists
// and its state is not zombie (a killed process its parent has not
// reaped yet) or dead.
func processRuns(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true // cannot tell: take it to be alive
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return true
	}
	state := stat[i+2]
	return state != 'Z' && state != 'X'
}

// keepLease renews the lease every binding.LeaseRenewEvery until ctx
// ends. A renewal the store does not answer is logged and tried again at
// the next tick: the lease lasts three periods. When another process has
// taken the lease (this one failed to renew it in time), lost receives
// the error once and keepLease returns: the node must stop, since the
// other process now owns its calls.
func keepLease(ctx context.Context, lease *binding.Lease, log *slog.Logger, lost chan<- error) {
	t := time.NewTicker(binding.LeaseRenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, binding.LeaseRenewEvery)
		err := lease.Renew(rctx)
		cancel()
		switch {
		case errors.Is(err, binding.ErrLeaseLost):
			lost <- err
			return
		case err != nil && ctx.Err() == nil:
			log.Warn("cannot renew the node's lease; trying again", "node", lease.Node(), "error", err)
		}
	}
}
