package frontdoor

import (
	"math"
	"syscall"
)

// nofileLimit is the process's soft RLIMIT_NOFILE: how many descriptors
// it may hold. Go's runtime has already raised it to the hard limit at
// start (the syscall package does so on Linux since Go 1.19), so that the
// limit read here is the one to budget with; a hard limit set with
// prlimit or systemd's LimitNOFILE is what bounds it.
func nofileLimit() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur > math.MaxInt32 {
		return math.MaxInt32, nil // RLIM_INFINITY: the kernel's nr_open bounds it
	}
	return int(lim.Cur), nil
}

// acceptRetryErrnos are the accept errors, besides those Go counts as
// temporary, that pass: a connection aborted or reset while it waited in
// the queue; a network error the new connection already had, which
// accept(2) on Linux reports ("treat them like EAGAIN by retrying"); a
// lack of memory or buffers; a firewall's refusal.
var acceptRetryErrnos = []syscall.Errno{
	syscall.ECONNABORTED, syscall.ECONNRESET, syscall.ENOBUFS, syscall.ENOMEM, syscall.EPERM,
	syscall.ENETDOWN, syscall.EPROTO, syscall.ENOPROTOOPT, syscall.EHOSTDOWN, syscall.ENONET,
	syscall.EHOSTUNREACH, syscall.EOPNOTSUPP, syscall.ENETUNREACH,
}
