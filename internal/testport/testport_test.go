package testport

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func bindable(port int) bool {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = pc.Close()
	l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// TestLeaseHeldUntilUnhold: a leased run is even, below the ephemeral
// range, bound by this process until Unhold, and bound again by Hold.
func TestLeaseHeldUntilUnhold(t *testing.T) {
	l, err := Take(4)
	require.NoError(t, err)
	t.Cleanup(l.Free)
	require.Zero(t, l.First%2)
	require.GreaterOrEqual(t, l.First, low)
	require.Less(t, l.First+l.N-1, EphemeralLow())
	require.Equal(t, []int{l.First, l.First + 1, l.First + 2, l.First + 3}, l.Ports())
	for _, p := range l.Ports() {
		require.False(t, bindable(p), "port %d is held", p)
	}
	l.Unhold()
	for _, p := range l.Ports() {
		require.True(t, bindable(p), "port %d is let go", p)
	}
	require.NoError(t, l.Hold())
	require.False(t, bindable(l.First))
}

// TestHeldPortRefusesConnections: a held port takes no TCP connection, so
// a client of a stopped server held meanwhile is refused at once, as when
// nothing is there, instead of hanging.
func TestHeldPortRefusesConnections(t *testing.T) {
	l, err := Take(1)
	require.NoError(t, err)
	t.Cleanup(l.Free)
	_, err = net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(l.First), 5*time.Second)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
}

// TestLeasesDoNotOverlap: no port is leased twice while leased, and a
// freed port may be leased again.
func TestLeasesDoNotOverlap(t *testing.T) {
	seen := map[int]bool{}
	var leases []*Lease
	for range 3 * BlockSize / 10 {
		l, err := Take(10)
		require.NoError(t, err)
		for _, p := range l.Ports() {
			require.False(t, seen[p], "port %d leased twice", p)
			seen[p] = true
		}
		leases = append(leases, l)
	}
	for _, l := range leases {
		l.Free()
	}
	l, err := Take(BlockSize)
	require.NoError(t, err, "a whole block")
	l.Free()
	_, err = Take(BlockSize + 1)
	require.Error(t, err)
}

// TestBlockLockedForOthers: the block of a lease is locked against any
// other open of its lock file, as another process's would be.
func TestBlockLockedForOthers(t *testing.T) {
	l, err := Take(1)
	require.NoError(t, err)
	t.Cleanup(l.Free)
	first := l.First - (l.First-low)%BlockSize
	f, err := os.OpenFile(filepath.Join(os.TempDir(), LockDirName, "block-"+strconv.Itoa(first)), os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	require.ErrorIs(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), syscall.EWOULDBLOCK)
}
