package binding

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// TestRegistrations: a registration saved by one node is found by another
// on the same store until it expires; a new REGISTER replaces it, an
// unREGISTER removes it, and bad input stores nothing.
func TestRegistrations(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		a, dsn := be.open(t, WithNode("vnum-a"), fixedClock(t0))
		b, err := Open(ctx, be.driver, dsn, WithNode("vnum-b"), fixedClock(t0))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })

		_, ok, err := b.LookupRegistration(ctx, "alice", t0)
		require.NoError(t, err)
		require.False(t, ok, "nobody registered yet")

		reg := callrec.Registration{User: "alice", Contact: "<sip:alice@10.0.0.7:5060;transport=udp>",
			Source: "192.0.2.7:40123", Transport: "udp", Expires: t0.Add(time.Hour)}
		require.NoError(t, a.SaveRegistration(ctx, reg))
		got, ok, err := b.LookupRegistration(ctx, "alice", t0.Add(time.Minute))
		require.NoError(t, err)
		require.True(t, ok, "another node finds it")
		want := reg
		want.Node = "vnum-a"
		require.Equal(t, want, got)

		_, ok, err = b.LookupRegistration(ctx, "alice", t0.Add(time.Hour))
		require.NoError(t, err)
		require.False(t, ok, "expired at its expiry")

		// The softphone registers again, through the other node.
		moved := callrec.Registration{User: "alice", Contact: "sip:alice@10.0.0.8:5062;transport=tcp",
			Source: "198.51.100.9:5062", Transport: "tcp", Expires: t0.Add(2 * time.Hour)}
		require.NoError(t, b.SaveRegistration(ctx, moved))
		got, ok, err = a.LookupRegistration(ctx, "alice", t0.Add(90*time.Minute))
		require.NoError(t, err)
		require.True(t, ok)
		moved.Node = "vnum-b"
		require.Equal(t, moved, got)
		var rows int
		require.NoError(t, a.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM registrations`).Scan(&rows))
		require.Equal(t, 1, rows, "one registration per account")

		require.NoError(t, a.DeleteRegistration(ctx, "alice"))
		_, ok, err = b.LookupRegistration(ctx, "alice", t0)
		require.NoError(t, err)
		require.False(t, ok, "unregistered")
		require.NoError(t, a.DeleteRegistration(ctx, "alice"), "unregistering twice is fine")

		for name, bad := range map[string]callrec.Registration{
			"user":       {User: "al ice", Contact: reg.Contact, Source: reg.Source, Expires: reg.Expires},
			"no contact": {User: "bob", Source: reg.Source, Expires: reg.Expires},
			"no source":  {User: "bob", Contact: reg.Contact, Expires: reg.Expires},
			"no expiry":  {User: "bob", Contact: reg.Contact, Source: reg.Source},
		} {
			require.ErrorIs(t, a.SaveRegistration(ctx, bad), ErrInvalid, name)
		}
		require.NoError(t, a.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM registrations`).Scan(&rows))
		require.Zero(t, rows)
	})
}

// TestRegistrationsRace: REGISTERs of one account taken by two nodes at
// once leave one whole registration, one of those sent, never a mix.
func TestRegistrationsRace(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		a, dsn := be.open(t, WithNode("vnum-a"))
		b, err := Open(ctx, be.driver, dsn, WithNode("vnum-b"))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		const n = 10
		var wg sync.WaitGroup
		errs := make([]error, 2*n)
		for i := range 2 * n {
			s := []*Store{a, b}[i%2]
			wg.Go(func() {
				errs[i] = s.SaveRegistration(ctx, callrec.Registration{User: "alice",
					Contact: fmt.Sprintf("sip:alice@10.0.0.%d", i), Source: fmt.Sprintf("192.0.2.%d:5060", i),
					Transport: "udp", Expires: t0.Add(time.Duration(i+1) * time.Minute)})
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		got, ok, err := a.LookupRegistration(ctx, "alice", t0)
		require.NoError(t, err)
		require.True(t, ok)
		var i int
		_, err = fmt.Sscanf(got.Contact, "sip:alice@10.0.0.%d", &i)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("192.0.2.%d:5060", i), got.Source, "contact and source of one REGISTER")
		require.Equal(t, t0.Add(time.Duration(i+1)*time.Minute), got.Expires)
		require.Equal(t, []string{"vnum-a", "vnum-b"}[i%2], got.Node)
	})
}
