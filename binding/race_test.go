package binding

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// The environment of a racing process (see raceChild).
const (
	raceDriverEnv = "VNUMTEST_RACE_DRIVER"
	raceDSNEnv    = "VNUMTEST_RACE_DSN"
	raceNameEnv   = "VNUMTEST_RACE_NAME"
	raceCountEnv  = "VNUMTEST_RACE_CREATES"
)

// racePolicy makes a pool of one host small: two-digit extensions, a
// distance-2 code of ten words.
var racePolicy = Policy{TTL: time.Hour, Quarantine: time.Hour, ExtensionDigits: 2}

// raceCapacity is how many bindings the raced pool holds.
const raceCapacity = 10

// raceCreates makes n bindings at once on s, all released together by
// start, and returns one line per create: "ok HOST EXT", "exhausted" or
// "error MESSAGE".
func raceCreates(s *Store, name string, n int, start <-chan struct{}) []string {
	out := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			b, err := s.CreateBinding(context.Background(), shipped(fmt.Sprintf("%s-%d", name, i)), t0)
			switch {
			case err == nil:
				out[i] = "ok " + b.Host + " " + b.Extension
			case errors.Is(err, ErrPoolExhausted):
				out[i] = "exhausted"
			default:
				out[i] = "error " + strings.ReplaceAll(err.Error(), "\n", " ")
			}
		})
	}
	wg.Wait()
	return out
}

// raceChild is a racing process: it opens the store named by its
// environment, says "ready", waits for a line on stdin and prints the
// result of its creates, one a line.
func raceChild() int {
	n, err := strconv.Atoi(os.Getenv(raceCountEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "race child:", err)
		return 2
	}
	s, err := Open(context.Background(), os.Getenv(raceDriverEnv), os.Getenv(raceDSNEnv),
		WithPolicy(racePolicy))
	if err != nil {
		fmt.Fprintln(os.Stderr, "race child:", err)
		return 2
	}
	defer s.Close()
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "race child:", err)
		return 2
	}
	start := make(chan struct{})
	close(start)
	for _, line := range raceCreates(s, os.Getenv(raceNameEnv), n, start) {
		fmt.Println(line)
	}
	return 0
}

// raceProcess is a racing process started by the test.
type raceProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startRaceProcess re-executes the test binary as a racing process on
// dsn and waits until it has opened its store.
func startRaceProcess(t *testing.T, be backend, dsn, name string, n int) *raceProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), raceDriverEnv+"="+be.driver, raceDSNEnv+"="+dsn,
		raceNameEnv+"="+name, raceCountEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = stdin.Close()
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	p := &raceProcess{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	require.True(t, p.out.Scan(), "%s did not start: %v", name, p.out.Err())
	require.Equal(t, "ready", p.out.Text())
	return p
}

// results lets the process go and returns its lines.
func (p *raceProcess) results(t *testing.T) []string {
	t.Helper()
	var lines []string
	for p.out.Scan() {
		lines = append(lines, p.out.Text())
	}
	require.NoError(t, p.out.Err())
	require.NoError(t, p.cmd.Wait())
	return lines
}

// TestRacingCreates: creates race for one small pool (one host, a code of
// ten extensions) from two Stores on separate connection pools in this
// process and from two other processes, all on one database. Exactly the
// pool's capacity succeeds, the rest are refused as ErrPoolExhausted and
// nothing else; the live bindings never share an (X, E), and any two are
// at least two digits apart (README "Bindings").
func TestRacingCreates(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		const perActor = 8 // 4 actors: 32 creates for 10 extensions
		ctx := context.Background()
		s, dsn := be.open(t, WithPolicy(racePolicy))
		seed(t, s, "17000000001")
		other, err := Open(ctx, be.driver, dsn, WithPolicy(racePolicy))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, other.Close()) })
		procs := []*raceProcess{
			startRaceProcess(t, be, dsn, "proc-1", perActor),
			startRaceProcess(t, be, dsn, "proc-2", perActor),
		}

		start := make(chan struct{})
		var mine [2][]string
		var wg sync.WaitGroup
		for i, st := range []*Store{s, other} {
			wg.Go(func() { mine[i] = raceCreates(st, fmt.Sprintf("store-%d", i+1), perActor, start) })
		}
		for _, p := range procs {
			_, err := io.WriteString(p.stdin, "go\n")
			require.NoError(t, err)
		}
		close(start)
		wg.Wait()
		lines := append(mine[0], mine[1]...)
		for _, p := range procs {
			got := p.results(t)
			require.Len(t, got, perActor)
			lines = append(lines, got...)
		}

		given := map[string]bool{}
		exhausted := 0
		for _, l := range lines {
			if l == "exhausted" {
				exhausted++
				continue
			}
			f := strings.Fields(l)
			require.Len(t, f, 3, "a create failed other than by a full pool: %s", l)
			require.Equal(t, "ok", f[0], l)
			require.False(t, given[f[2]], "extension %s given twice", f[2])
			given[f[2]] = true
		}
		require.Len(t, given, raceCapacity, "the pool filled up exactly")
		require.Equal(t, 4*perActor-raceCapacity, exhausted)

		live, err := s.ListBindings(ctx, "m1", "")
		require.NoError(t, err)
		require.Len(t, live, raceCapacity)
		for i, a := range live {
			require.True(t, given[a.Extension], "stored %s was reported", a.Extension)
			for _, b := range live[i+1:] {
				require.GreaterOrEqual(t, hamming(a.Extension, b.Extension), 2,
					"on %s, %s and %s are one digit apart", a.Host, a.Extension, b.Extension)
			}
		}
	})
}

// TestRacingRenewAndRelease: renewals and releases of one binding sent at
// once to two nodes (two Stores on one database) act once: one renewal
// gives the order its new binding and the others are refused as
// ErrExists; one release ends a binding and the others get ErrEnded. The
// order never has two active bindings.
func TestRacingRenewAndRelease(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		const n = 6
		ctx := context.Background()
		a, dsn := be.open(t)
		seed(t, a, "17000000001", "17000000002")
		b, err := Open(ctx, be.driver, dsn)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		old, err := a.CreateBinding(ctx, shipped("o-1"), t0)
		require.NoError(t, err)

		at := t0.Add(time.Hour)
		renewed := make([]*Binding, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			s := []*Store{a, b}[i%2]
			wg.Go(func() { renewed[i], errs[i] = s.Renew(ctx, old.ID, 0, at) })
		}
		wg.Wait()
		var fresh *Binding
		for i := range n {
			if errs[i] == nil {
				require.Nil(t, fresh, "two renewals succeeded")
				fresh = renewed[i]
				continue
			}
			require.ErrorIs(t, errs[i], ErrExists)
		}
		require.NotNil(t, fresh, "one renewal succeeded")
		all, err := a.ListBindings(ctx, "m1", "o-1")
		require.NoError(t, err)
		require.Len(t, all, 2, "the old binding and one new one")
		got, err := a.GetBinding(ctx, old.ID)
		require.NoError(t, err)
		require.Equal(t, StatusReleased, got.StatusAt(at))

		for i := range n {
			s := []*Store{a, b}[i%2]
			wg.Go(func() { _, errs[i] = s.Release(ctx, fresh.ID, at.Add(time.Minute)) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
				continue
			}
			require.ErrorIs(t, err, ErrEnded)
		}
		require.Equal(t, 1, ok, "one release acted")
	})
}

// TestRacingCDRClose: a call's end written by two nodes at once, while a
// restarting node closes its interrupted rows, closes the row once: one
// FinishCDR or the recovery, never both, and the row keeps the first
// close.
func TestRacingCDRClose(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		const rounds, finishers = 5, 4
		ctx := context.Background()
		a, dsn := be.open(t, WithNode("vnum-a"))
		seed(t, a)
		b, err := Open(ctx, be.driver, dsn, WithNode("vnum-a"))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		lease, err := b.TakeLease(ctx, Holder{Host: "b", PID: 2}, LeaseOptions{})
		require.NoError(t, err)
		rates := Rates{PerMinute: 20000}
		for round := range rounds {
			c := &callrec.Record{CallID: fmt.Sprintf("call-%d", round), Merchant: "m1", StartedAt: t0,
				AnsweredAt: t0.Add(time.Second)}
			require.NoError(t, a.StartCDR(ctx, c))
			var wg sync.WaitGroup
			errs := make([]error, finishers)
			var recovered Recovered
			var recoverErr error
			for i := range finishers {
				s := []*Store{a, b}[i%2]
				end := *c
				end.EndedAt = t0.Add(time.Duration(i+1) * time.Minute)
				wg.Go(func() { errs[i] = s.FinishCDR(ctx, &end, rates) })
			}
			wg.Go(func() { recovered, recoverErr = lease.RecoverInterrupted(ctx) })
			wg.Wait()
			require.NoError(t, recoverErr)
			closed := int(recovered.Closed)
			for _, err := range errs {
				if err == nil {
					closed++
					continue
				}
				require.ErrorIs(t, err, ErrCDRFinished)
			}
			require.Equal(t, 1, closed, "round %d: the row was closed once", round)
			got, err := a.GetCDR(ctx, c.ID)
			require.NoError(t, err)
			require.False(t, got.EndedAt.IsZero())
		}
	})
}
