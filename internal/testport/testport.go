// Package testport hands tests fixed loopback ports for programs that
// cannot bind port 0 and tell which port they got: SIPp, Kamailio,
// PostgreSQL, and `vnum serve`, whose ports are written into its
// configuration before it starts.
//
// A port picked by binding port 0, or by probing, and then closed can be
// taken by any other process before the program binds it. This package
// closes that gap three ways:
//
//   - Its ports lie below the kernel's ephemeral range
//     (net.ipv4.ip_local_port_range), so no socket bound to port 0, no
//     outgoing connection of any process, can be given one of them.
//   - Each process leases whole blocks of ports through a lock file per
//     block (flock, in a directory under os.TempDir shared by every test
//     binary, the scripts/lib/ports.sh of the bench and demo scripts
//     included), so cooperating processes never pick the same port. The
//     kernel drops the lock when the process ends, however it ends.
//   - A leased port stays bound (UDP and TCP, on 127.0.0.1) by the test
//     process itself until Unhold, called right before the program that
//     is to bind it starts: a process outside this scheme that probes the
//     port meanwhile finds it taken.
//
// What is left is the moment between Unhold and the program's bind; the
// callers retry with fresh ports where a program reports that its port
// was taken.
package testport

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

const (
	// BlockSize is how many ports one lock file covers; a lease never
	// spans two blocks, so it is also the longest lease.
	BlockSize = 128
	// low is the first port leased: above the ports of well-known
	// services, and a multiple of BlockSize so that blocks align.
	low = 80 * BlockSize // 10240
	// defaultEphemeralLow is Linux's default first ephemeral port, used
	// where the range cannot be read.
	defaultEphemeralLow = 32768
	// LockDirName is the folder under os.TempDir holding the block locks;
	// scripts/lib/ports.sh uses the same folder and file names.
	LockDirName = "vnum-testports"
)

// ErrExhausted reports that no block of ports could be leased: every one
// is locked by another process, or has no run of free ports left.
var ErrExhausted = errors.New("testport: no free loopback ports left below the ephemeral range")

// Lease is a run of consecutive ports on 127.0.0.1 that this process has
// to itself until Free.
type Lease struct {
	// First is the first port of the run; it is even, so that a run can
	// hold RTP/RTCP pairs.
	First int
	// N is the number of ports in the run.
	N int

	mu    sync.Mutex
	holds []io.Closer
	blk   *block
	freed bool
}

// Ports returns the ports of the lease, in order.
func (l *Lease) Ports() []int {
	out := make([]int, l.N)
	for i := range out {
		out[i] = l.First + i
	}
	return out
}

// Unhold closes the sockets that keep the lease's ports bound, so that a
// program can bind them; call it right before starting the program.
func (l *Lease) Unhold() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.holds {
		_ = c.Close()
	}
	l.holds = nil
}

// Hold binds the lease's ports again (UDP and TCP on 127.0.0.1), after
// the program that used them has stopped and before one that will use
// them again starts (a restart). It fails when a port is still bound,
// or when connections the program closed linger on it in TIME_WAIT (a
// hold has no SO_REUSEADDR: with it, a listener could share the port).
func (l *Lease) Hold() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holds != nil {
		return nil
	}
	holds, err := holdRun(l.First, l.N)
	if err != nil {
		return err
	}
	l.holds = holds
	return nil
}

// Free unholds the ports and gives them back to the process's blocks,
// for later leases; the program that used them must have stopped.
func (l *Lease) Free() {
	l.Unhold()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.freed {
		return
	}
	l.freed = true
	pool.mu.Lock()
	defer pool.mu.Unlock()
	for p := l.First; p < l.First+l.N; p++ {
		delete(l.blk.leased, p)
	}
}

// block is one BlockSize run of ports whose lock file this process holds.
type block struct {
	first  int
	lock   *os.File // kept open: closing it would drop the lock
	leased map[int]bool
}

// blocks are the blocks this process holds.
type blocks struct {
	mu    sync.Mutex
	held  []*block
	tried map[int]bool // blocks already tried: held here or locked elsewhere
}

var pool blocks

// Take leases n consecutive ports, the first one even, each of them free
// on 127.0.0.1 for both UDP and TCP and held bound by this process until
// Unhold or Free.
func Take(n int) (*Lease, error) {
	if n < 1 || n > BlockSize {
		return nil, fmt.Errorf("testport: cannot lease %d ports at once (1 to %d)", n, BlockSize)
	}
	pool.mu.Lock()
	defer pool.mu.Unlock()
	for _, b := range pool.held {
		if l := b.take(n); l != nil {
			return l, nil
		}
	}
	for {
		b, err := pool.lock()
		if err != nil {
			return nil, err
		}
		if l := b.take(n); l != nil {
			return l, nil
		}
	}
}

// take leases a run of n ports of b, or returns nil; pool.mu is held.
func (b *block) take(n int) *Lease {
	for start := b.first; start+n <= b.first+BlockSize; start += 2 {
		busy := false
		for p := start; p < start+n; p++ {
			if b.leased[p] {
				busy = true
				break
			}
		}
		if busy {
			continue
		}
		holds, err := holdRun(start, n)
		if err != nil {
			continue // bound by a process outside the scheme
		}
		for p := start; p < start+n; p++ {
			b.leased[p] = true
		}
		return &Lease{First: start, N: n, holds: holds, blk: b}
	}
	return nil
}

// lock locks a block no other process holds, picked at random so that
// processes starting together do not contend for the same lock files;
// p.mu is held.
func (p *blocks) lock() (*block, error) {
	dir := filepath.Join(os.TempDir(), LockDirName)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("testport: %w", err)
	}
	// Every user of the machine's tests shares the folder.
	_ = os.Chmod(dir, 0o777|os.ModeSticky)
	if p.tried == nil {
		p.tried = map[int]bool{}
	}
	high := EphemeralLow()
	var firsts []int
	for first := low; first+BlockSize <= high; first += BlockSize {
		if !p.tried[first] {
			firsts = append(firsts, first)
		}
	}
	if len(firsts) == 0 {
		// Every block was tried once: those other processes held then
		// may be free now.
		for first := range p.tried {
			delete(p.tried, first)
		}
		for _, b := range p.held {
			p.tried[b.first] = true
		}
		for first := low; first+BlockSize <= high; first += BlockSize {
			if !p.tried[first] {
				firsts = append(firsts, first)
			}
		}
	}
	rand.Shuffle(len(firsts), func(i, j int) { firsts[i], firsts[j] = firsts[j], firsts[i] })
	for _, first := range firsts {
		p.tried[first] = true
		f, err := os.OpenFile(filepath.Join(dir, "block-"+strconv.Itoa(first)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return nil, fmt.Errorf("testport: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			continue
		}
		b := &block{first: first, lock: f, leased: map[int]bool{}}
		p.held = append(p.held, b)
		return b, nil
	}
	return nil, ErrExhausted
}

// holdRun binds ports first..first+n-1 on 127.0.0.1 for UDP and TCP, or
// binds none of them.
func holdRun(first, n int) ([]io.Closer, error) {
	var holds []io.Closer
	release := func() {
		for _, c := range holds {
			_ = c.Close()
		}
	}
	for p := first; p < first+n; p++ {
		pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			release()
			return nil, err
		}
		holds = append(holds, pc)
		fd, err := bindTCP(p)
		if err != nil {
			release()
			return nil, err
		}
		holds = append(holds, fd)
	}
	return holds, nil
}

// tcpHold is a TCP socket bound to a port and not listening.
type tcpHold int

func (h tcpHold) Close() error { return syscall.Close(int(h)) }

// bindTCP binds a TCP socket to 127.0.0.1:port without listening on it,
// and without SO_REUSEADDR: it takes the port from every other bind (a
// listener's SO_REUSEADDR shares a port only with sockets that set it
// too), while a connection to the port is refused at once, as when
// nothing is there (a listener would take it and leave it hanging, which
// would change what a test of a stopped server sees).
func bindTCP(port int) (tcpHold, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("testport: tcp socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		_ = syscall.Close(fd)
		return 0, fmt.Errorf("testport: bind tcp 127.0.0.1:%d: %w", port, err)
	}
	return tcpHold(fd), nil
}

// EphemeralLow is the first port of the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), 32768 where it cannot be read or leaves
// too little room below it.
func EphemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralLow
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultEphemeralLow
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || v < low+8*BlockSize {
		return defaultEphemeralLow
	}
	return v
}
