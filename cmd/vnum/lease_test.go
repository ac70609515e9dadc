package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/config"
)

// TestSecondNodeInProcess: a second node of one node.id on one store is
// refused with the line that names the node and its holder, and the first
// keeps its lease; another node.id starts beside it.
func TestSecondNodeInProcess(t *testing.T) {
	useTempStore(t)
	id := func(id string) func(*config.Config) { return func(c *config.Config) { c.Node.ID = id } }
	first, _, _ := startTestNodeOnStore(t, id("vnum-a"))

	c := config.Default()
	c.SIP.Listen = []string{"udp://127.0.0.1:0"}
	c.Store.DSN = os.Getenv("VNUM_STORE_DSN")
	c.Node.ID = "vnum-a"
	c.Trunk.Outbound = "sip:127.0.0.1:9;transport=udp"
	_, err := startNodeWith(context.Background(), c, slog.New(slog.DiscardHandler), true, nil)
	host, herr := os.Hostname()
	require.NoError(t, herr)
	require.ErrorContains(t, err, `node.id "vnum-a" is in use: vnum pid `)
	require.ErrorContains(t, err, " on host "+host+" holds its lease in the store (renewed ")
	require.NoError(t, first.lease.Renew(context.Background()), "the first keeps its lease")

	startTestNodeOnStore(t, id("vnum-b"))
}

// TestServeStopsWhenLeaseLost: a serving node whose lease another process
// took over (after the node failed to renew it in time) stops at its next
// renewal, as on SIGTERM, and says why.
func TestServeStopsWhenLeaseLost(t *testing.T) {
	t.Parallel()
	c := adminConfig(t)
	c.SIP.Listen = []string{"udp://127.0.0.1:0"}
	c.Node.ID = "vnum-lost"
	c.Calls.DrainTimeout = time.Second
	c.Trunk.Outbound = "sip:127.0.0.1:9;transport=udp" // no call is placed
	c.Trunk.Keepalive = 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up := make(chan struct{})
	served := make(chan error, 1)
	go func() { served <- serve(ctx, c, slog.New(slog.DiscardHandler), func(*node) { close(up) }) }()
	select {
	case <-up:
	case err := <-served:
		t.Fatalf("serve: %v", err)
	}

	// Another process, whose clock says the node's lease has expired,
	// takes it over.
	later := time.Now().Add(binding.LeaseTTL + time.Minute)
	s, err := binding.Open(context.Background(), c.Store.Driver, c.Store.DSN, binding.WithNode(c.Node.ID),
		binding.WithClock(func() time.Time { return later }))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	_, err = s.TakeLease(context.Background(), binding.Holder{Host: "elsewhere", PID: 1}, binding.LeaseOptions{})
	require.NoError(t, err)

	select {
	case err := <-served:
		require.ErrorIs(t, err, binding.ErrLeaseLost)
		require.ErrorContains(t, err, "by pid 1 on host elsewhere")
	case <-time.After(4 * binding.LeaseRenewEvery):
		t.Fatal("serve went on without its lease")
	}
	st, err := s.NodeLease(context.Background(), c.Node.ID)
	require.NoError(t, err)
	require.Equal(t, "elsewhere", st.Holder.Host, "the stop left the new holder's lease alone")
}

// TestHolderGone: a holder is known dead only when it is a process of this
// machine that no longer runs, a zombie included; a holder elsewhere, or
// with this process's pid, is not.
func TestHolderGone(t *testing.T) {
	t.Parallel()
	me := thisHolder()
	if me.Machine == "" {
		t.Skip("skipping: no /proc to tell this machine and its processes")
	}
	child := exec.Command("true")
	require.NoError(t, child.Start())
	pid := child.Process.Pid
	// Not reaped yet: a zombie, which runs no more.
	require.Eventually(t, func() bool { return !processRuns(pid) }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, child.Wait())
	require.False(t, processRuns(pid), "a reaped process")
	require.True(t, processRuns(os.Getpid()))

	lease := func(h binding.Holder) binding.LeaseState { return binding.LeaseState{Holder: h} }
	require.True(t, holderGone(lease(binding.Holder{Host: me.Host, PID: pid, Machine: me.Machine})))
	require.False(t, holderGone(lease(binding.Holder{Host: me.Host, PID: pid, Machine: "another machine"})))
	require.False(t, holderGone(lease(binding.Holder{Host: me.Host, PID: pid})))
	require.False(t, holderGone(lease(me)), "this process's own pid")
	require.False(t, holderGone(lease(binding.Holder{Host: me.Host, PID: os.Getppid(), Machine: me.Machine})))
}
