//go:build !linux

package frontdoor

import (
	"errors"
	"syscall"
)

// nofileLimit is unknown here: vnum serves on Linux, and elsewhere builds
// for development only. The TCP cap then falls back to tcpUnknownLimit.
func nofileLimit() (int, error) {
	return 0, errors.New("the descriptor limit is read on Linux only")
}

// acceptRetryErrnos add to what Go counts as temporary a connection
// aborted or reset while it waited in the queue.
var acceptRetryErrnos = []syscall.Errno{syscall.ECONNABORTED, syscall.ECONNRESET}
