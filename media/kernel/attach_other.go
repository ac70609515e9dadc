//go:build !linux

package kernel

import (
	"errors"

	"github.com/cilium/ebpf"
)

// attach refuses: only Linux has TC.
func attach(*ebpf.Program, int, Attach) (Attach, func() error, error) {
	return 0, nil, errors.New("kernel relay: Linux only")
}

// attached finds nothing: only Linux has TC.
func attached(int) ([]uint32, error) {
	return nil, errors.New("kernel relay: Linux only")
}
