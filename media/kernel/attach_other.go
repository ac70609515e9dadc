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
