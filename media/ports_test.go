package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests take port pairs from this range; Open skips ports that other
// processes hold, so nothing depends on a particular port being free.
const testMinPort, testMaxPort = 41000, 42999

func newTestPorts(t testing.TB) *Ports {
	t.Helper()
	p, err := NewPorts("127.0.0.1", testMinPort, testMaxPort)
	require.NoError(t, err)
	return p
}

func TestNewPortsErrors(t *testing.T) {
	for name, args := range map[string]struct {
		ip       string
		min, max int
	}{
		"bad ip":        {"localhost", 20000, 20010},
		"inverted":      {"127.0.0.1", 20010, 20000},
		"one port":      {"127.0.0.1", 20000, 20000},
		"odd pair only": {"127.0.0.1", 20001, 20002},
		"zero":          {"127.0.0.1", 0, 10},
		"too high":      {"127.0.0.1", 65534, 65536},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewPorts(args.ip, args.min, args.max)
			require.ErrorIs(t, err, ErrBadPortRange)
		})
	}
}

func TestPortsOpen(t *testing.T) {
	p := newTestPorts(t)
	s, err := p.Open()
	require.NoError(t, err)
	require.Zero(t, s.Port%2, "rtp port is even")
	require.GreaterOrEqual(t, s.Port, testMinPort)
	require.LessOrEqual(t, s.Port+1, testMaxPort)
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), s.IP)
	require.Equal(t, s.Port, s.RTP.LocalAddr().(*net.UDPAddr).Port)
	require.Equal(t, s.Port+1, s.RTCP.LocalAddr().(*net.UDPAddr).Port)
	require.Equal(t, netip.AddrPortFrom(s.IP, uint16(s.Port)), s.RTPAddr())
	require.Equal(t, 1, p.InUse())

	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "idempotent")
	require.Equal(t, 0, p.InUse())
}

func TestPortsSkipsBusyPorts(t *testing.T) {
	// Find a pair nobody holds, then take its RTCP port from outside.
	p := newTestPorts(t)
	free, err := p.Open()
	require.NoError(t, err)
	port := free.Port
	require.NoError(t, free.Close())

	busy, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
	require.NoError(t, err)
	t.Cleanup(func() { busy.Close() })

	q, err := NewPorts("127.0.0.1", port, port+3)
	require.NoError(t, err)
	s, err := q.Open()
	if err != nil {
		require.ErrorIs(t, err, ErrNoPorts, "port+2 is taken by someone else too")
		return
	}
	t.Cleanup(func() { s.Close() })
	require.Equal(t, port+2, s.Port)
}

func TestPortsExhaustionAndDrain(t *testing.T) {
	p := newTestPorts(t)
	first, err := p.Open()
	require.NoError(t, err)
	port := first.Port
	require.NoError(t, first.Close())

	// A range of one pair: full while open, then while draining.
	q, err := NewPorts("127.0.0.1", port, port+1)
	require.NoError(t, err)
	now := time.Unix(1000, 0)
	q.now = func() time.Time { return now }
	s, err := q.Open()
	require.NoError(t, err)
	_, err = q.Open()
	require.ErrorIs(t, err, ErrNoPorts)
	require.Equal(t, 1, q.InUse())

	require.NoError(t, s.Close())
	require.Equal(t, 0, q.InUse())
	_, err = q.Open()
	require.ErrorIs(t, err, ErrNoPorts, "a closed pair drains before reuse")

	now = now.Add(DrainTime)
	s, err = q.Open()
	require.NoError(t, err, "reusable after the drain")
	require.Equal(t, port, s.Port)
	require.NoError(t, s.Close())
	require.Equal(t, 0, q.InUse())
}

func TestPortsRotate(t *testing.T) {
	p := newTestPorts(t)
	a, err := p.Open()
	require.NoError(t, err)
	require.NoError(t, a.Close())
	p.drain = 0
	b, err := p.Open()
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	require.NotEqual(t, a.Port, b.Port, "the next call gets the next pair, not the one just freed")
}
