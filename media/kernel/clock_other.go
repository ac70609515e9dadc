//go:build !unix

package kernel

import "time"

// start stands in for the monotonic clock where there is no kernel relay.
var start = time.Now()

func monotonic() time.Duration { return time.Since(start) }
