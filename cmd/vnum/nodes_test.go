package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/sip/sipua"
)

// TestCallbackAcrossNodes: two nodes share one store. A
// merchant's softphone registers with node 1 and calls the consignee
// through it; the consignee's call back, taken by node 2, rings that
// softphone where it registered, showing X. Registrations and the last
// caller live in the store, so whichever node takes the call back reaches
// the right party. On PostgreSQL, the store of several machines, and on
// one SQLite file shared by two nodes of one machine.
func TestCallbackAcrossNodes(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			useStore(t, driver)
			trunk := func(id string) func(*config.Config) {
				return func(c *config.Config) {
					c.Node.ID = id
					c.Trunk.InboundCIDRs = []string{"127.0.0.2/32"} // the consignee's carrier
				}
			}
			n1, carrier, vnum1 := startTestNodeOnStore(t, trunk("node-1"))
			n2, _, vnum2 := startTestNodeOnStore(t, trunk("node-2"))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			b := shippedBinding(t)
			mustRun(t, "account", "add", "m1", "alice", "--password", "alice-secret")

			alice, err := sipua.NewSoftphone("alice", "alice-secret", nil)
			require.NoError(t, err)
			t.Cleanup(alice.Close)
			require.NoError(t, alice.Register(ctx, vnum1))
			require.True(t, n2.sip.Registered("alice"), "node 2 sees the registration node 1 took")

			d, err := alice.Call(ctx, vnum1, b.Host+"-"+b.Extension)
			require.NoError(t, err)
			_, err = carrier.NextSession(15 * time.Second)
			require.NoError(t, err)
			require.NoError(t, d.Bye(ctx))
			require.Eventually(t, func() bool { return n1.sip.ActiveCalls() == 0 }, 10*time.Second, 20*time.Millisecond)

			// The consignee calls X back over node 2's trunk.
			back, err := sipua.NewSoftphoneAt(netip.MustParseAddr("127.0.0.2"), consignee, "", nil)
			require.NoError(t, err)
			t.Cleanup(back.Close)
			d, err = back.Call(ctx, vnum2, b.Host)
			require.NoError(t, err)
			in, err := alice.NextIncoming(15 * time.Second)
			require.NoError(t, err, "the call back taken by node 2 rings alice, registered with node 1")
			require.Equal(t, b.Host, in.Invite.From().Address.User, "alice sees X")
			require.NotContains(t, in.Invite.String(), consignee, "and not the consignee's number")
			require.NoError(t, d.Bye(ctx))
			require.Eventually(t, func() bool { return n2.sip.ActiveCalls() == 0 }, 10*time.Second, 20*time.Millisecond)

			var cdrs []map[string]any
			require.NoError(t, json.Unmarshal([]byte(mustRun(t, "cdr", "list", "--format", "json")), &cdrs))
			require.Len(t, cdrs, 2)
			nodes := map[any]any{}
			for _, c := range cdrs {
				nodes[c["direction"]] = c["node"]
			}
			require.Equal(t, map[any]any{"to_consignee": "node-1", "callback": "node-2"}, nodes)

			// Unregistering on node 2 ends what node 1 knows too.
			res, err := alice.RegisterFor(ctx, vnum2, 0)
			require.NoError(t, err)
			require.Equal(t, 200, res.StatusCode)
			require.False(t, n1.sip.Registered("alice"))
		})
	}
}
