package integration

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/internal/testport"
)

// Ports. vnum, SIPp, Kamailio and baresip are told their ports on the
// command line or in a config file, so the tests pick them. A port that
// was free a moment ago can be taken before the program binds it; to
// leave no room for that, every port comes from internal/testport: below
// the kernel's ephemeral range, in blocks no other test process uses, and
// held bound by this process until letGo, called right before the
// program that binds the port starts. Where a program still finds its
// port taken, the harness starts it again on fresh ports (startSipp,
// startKamailio, startServe).

var (
	leasesMu sync.Mutex
	leases   = map[int]*testport.Lease{} // by first port
)

// freePorts leases n consecutive ports on 127.0.0.1, the first even
// (RTP/RTCP pairs, sipp's -mp and -mp+2), held until letGo and given back
// when the test ends.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	l, err := testport.Take(n)
	if err != nil {
		t.Fatalf("%d free loopback ports: %v", n, err)
	}
	leasesMu.Lock()
	leases[l.First] = l
	leasesMu.Unlock()
	// Registered before the cleanups of the processes that use the ports,
	// so it runs after them.
	t.Cleanup(func() {
		leasesMu.Lock()
		delete(leases, l.First)
		leasesMu.Unlock()
		l.Free()
	})
	return l.First
}

// freePort leases one port, free for both UDP and TCP (SIP listens on both
// with the same number), held until letGo.
func freePort(t *testing.T) int {
	t.Helper()
	return freePorts(t, 1)
}

// freeRange leases n consecutive ports for a program that takes its ports
// from the range itself, skipping those in use (vnum's media.rtp_ports,
// baresip's rtp_ports): they are not held.
func freeRange(t *testing.T, n int) int {
	t.Helper()
	first := freePorts(t, n)
	letGo(first)
	return first
}

// letGo stops holding the leases that begin at firsts, for the program
// about to start and bind them.
func letGo(firsts ...int) {
	leasesMu.Lock()
	defer leasesMu.Unlock()
	for _, p := range firsts {
		if l := leases[p]; l != nil {
			l.Unhold()
		}
	}
}

// hold binds the leases that begin at firsts again, between a program's
// stop and its restart on the same ports.
func hold(t *testing.T, firsts ...int) {
	t.Helper()
	leasesMu.Lock()
	defer leasesMu.Unlock()
	for _, p := range firsts {
		if l := leases[p]; l != nil {
			if err := l.Hold(); err != nil {
				t.Logf("port %d stays leased, not held (its closed connections linger): %v", p, err)
			}
		}
	}
}

// errPortTaken is a program's report that a port it was to bind is taken.
var errPortTaken = errors.New("port already in use")

// bindFailed reports whether a program's output says that it could not
// bind a port in use: Go's "bind: address already in use", SIPp's
// "Unable to bind ...", Kamailio's and PostgreSQL's "Address already in
// use".
func bindFailed(paths ...string) bool {
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		text := strings.ToLower(string(data))
		if strings.Contains(text, "address already in use") || strings.Contains(text, "unable to bind") {
			return true
		}
	}
	return false
}

// ownsPort reports whether process pid has a socket bound to port (UDP,
// or TCP in any state) on any local address. It reads /proc and binds
// nothing itself: a probe that binds the port could make the program's
// own bind fail at that very moment.
func ownsPort(pid, port int) bool {
	inodes := socketInodes(pid)
	if len(inodes) == 0 {
		return false
	}
	for _, table := range []string{"udp", "udp6", "tcp", "tcp6"} {
		if tableHas(filepath.Join("/proc", strconv.Itoa(pid), "net", table), port, inodes) {
			return true
		}
	}
	return false
}

// socketInodes returns the inodes of pid's open sockets.
func socketInodes(pid int) map[string]bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok {
			out[strings.TrimSuffix(inode, "]")] = true
		}
	}
	return out
}

// tableHas reports whether a /proc/net/{udp,tcp}[6] table lists a socket
// with local port port and one of inodes.
func tableHas(path string, port int, inodes map[string]bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		if strings.HasSuffix(fields[1], want) && inodes[fields[9]] {
			return true
		}
	}
	return false
}

// waitBound waits until p has bound port, and returns nil; errPortTaken
// when p exited saying a port of its was in use (its output is in
// p.logPath and the extra files); nil as well when p exited for any other
// reason before it was seen bound, which the test's own checks of p
// report.
func waitBound(p *proc, port int, within time.Duration, extra ...string) error {
	deadline := time.Now().Add(within)
	for {
		if ownsPort(p.cmd.Process.Pid, port) {
			return nil
		}
		if p.exited() {
			if bindFailed(append([]string{p.logPath}, extra...)...) {
				return fmt.Errorf("%s (pid %d): %w", p.name, p.cmd.Process.Pid, errPortTaken)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) did not bind port %d within %s", p.name, p.cmd.Process.Pid, port, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOwnsPort: the harness tells which process has bound a port from
// /proc, without binding it: UDP, and TCP whether listening or not.
func TestOwnsPort(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	me := os.Getpid()
	require.True(t, ownsPort(me, pc.LocalAddr().(*net.UDPAddr).Port))
	require.True(t, ownsPort(me, l.Addr().(*net.TCPAddr).Port))

	held := freePort(t)
	require.True(t, ownsPort(me, held), "a held port is bound by the test process")
	letGo(held)
	require.False(t, ownsPort(me, held), "let go")
	require.False(t, ownsPort(os.Getppid(), pc.LocalAddr().(*net.UDPAddr).Port), "another process's")
}
