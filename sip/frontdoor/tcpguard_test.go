package frontdoor

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// flakyListener fails its first accepts with err, then accepts for real.
type flakyListener struct {
	net.Listener
	err   error
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestAcceptBackoff: accept errors that pass (out of descriptors, a
// connection aborted in the queue) are waited out, not handed to sipgo,
// whose accept loop would end; an error that does not pass is handed up,
// and Close ends a backoff at once.
func TestAcceptBackoff(t *testing.T) {
	t.Parallel()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	for name, err := range map[string]error{
		"EMFILE":       emfile,
		"ENFILE":       &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
		"ECONNABORTED": &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)},
		"EPROTO":       &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EPROTO)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			inner, lerr := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, lerr)
			flaky := &flakyListener{Listener: inner, err: err}
			flaky.fails.Store(5)
			var logs bytes.Buffer // written by Accept, on this goroutine
			g := NewTCPGuard(TCPOptions{}, nil, slog.New(slog.NewTextHandler(&logs, nil)))
			ln := g.Listener(flaky, "tcp")
			t.Cleanup(func() { _ = ln.Close() })
			c, derr := net.Dial("tcp", inner.Addr().String())
			require.NoError(t, derr)
			t.Cleanup(func() { _ = c.Close() })
			got, aerr := ln.Accept()
			require.NoError(t, aerr)
			require.Equal(t, c.LocalAddr().String(), got.RemoteAddr().String())
			require.NoError(t, got.Close())
			require.Equal(t, 1, strings.Count(logs.String(), "sip tcp accept failed; retrying"), "one line for the burst:\n%s", logs.String())
		})
	}
	t.Run("an error that does not pass", func(t *testing.T) {
		t.Parallel()
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		broken := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EINVAL)}
		flaky := &flakyListener{Listener: inner, err: broken}
		flaky.fails.Store(1)
		ln := NewTCPGuard(TCPOptions{}, nil, slog.New(slog.DiscardHandler)).Listener(flaky, "tcp")
		t.Cleanup(func() { _ = ln.Close() })
		_, err = ln.Accept()
		require.ErrorIs(t, err, syscall.EINVAL)
	})
	t.Run("Close during a backoff", func(t *testing.T) {
		t.Parallel()
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		flaky := &flakyListener{Listener: inner, err: emfile}
		flaky.fails.Store(1 << 30)
		ln := NewTCPGuard(TCPOptions{}, nil, slog.New(slog.DiscardHandler)).Listener(flaky, "tcp")
		done := make(chan error, 1)
		go func() {
			_, err := ln.Accept()
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, ln.Close())
		select {
		case err := <-done:
			require.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Accept did not return after Close")
		}
	})
}

// TestPassingAcceptError pins which accept errors are waited out.
func TestPassingAcceptError(t *testing.T) {
	t.Parallel()
	for errno, want := range map[syscall.Errno]bool{
		syscall.EMFILE: true, syscall.ENFILE: true, syscall.ECONNABORTED: true, syscall.ECONNRESET: true,
		syscall.ENOBUFS: true, syscall.ENOMEM: true, syscall.EAGAIN: true, syscall.EINTR: true,
		syscall.EPROTO: true, syscall.ENETUNREACH: true, syscall.EPERM: true,
		syscall.EINVAL: false, syscall.EBADF: false, syscall.ENOTSOCK: false,
	} {
		err := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
		require.Equal(t, want, passingAcceptError(err), "%v", errno)
	}
	require.False(t, passingAcceptError(errors.New("something else")))
	require.False(t, passingAcceptError(net.ErrClosed))
}

// TestFDBudget pins how the descriptors are shared: media first (two
// sockets a pair, or four a call under calls.max_active), a reserve, the
// rest for TCP, never under tcpFloor.
func TestFDBudget(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		limit, pairs, maxActive int
		want                    fdBudget
	}{
		"default range, big limit":  {1 << 20, 5000, 0, fdBudget{limit: 1 << 20, media: 10000, tcp: 1<<20 - 10000 - fdReserve}},
		"max_active bounds media":   {65536, 5000, 100, fdBudget{limit: 65536, media: 400, tcp: 65536 - 400 - fdReserve}},
		"max_active above range":    {65536, 50, 1000, fdBudget{limit: 65536, media: 100, tcp: 65536 - 100 - fdReserve}},
		"ephemeral ports":           {4096, 0, 0, fdBudget{limit: 4096, media: 0, tcp: 4096 - fdReserve}},
		"ephemeral with max_active": {4096, 0, 10, fdBudget{limit: 4096, media: 40, tcp: 4096 - 40 - fdReserve}},
		"small limit":               {512, 50, 0, fdBudget{limit: 512, media: 100, tcp: 512 - 100 - fdReserve}},
		"too small":                 {1024, 5000, 0, fdBudget{limit: 1024, media: 10000, tcp: tcpFloor, short: true}},
		"unknown limit":             {0, 5000, 0, fdBudget{media: 10000, tcp: tcpUnknownLimit}},
	} {
		require.Equal(t, tc.want, newFDBudget(tc.limit, tc.pairs, tc.maxActive), name)
	}
}
