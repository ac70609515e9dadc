package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/sip/sipua"
)

// TestCallbackToNumberNamedLikeAnAccount: a courier calls over the trunk
// from a number that is also the user name of one of the merchant's SIP
// accounts. The consignee's call back reaches the courier on the trunk,
// because the record says the last caller was a number: whom a call back
// dials is decided by what the caller was, not by what its string looks
// like.
func TestCallbackToNumberNamedLikeAnAccount(t *testing.T) {
	n, carrier, vnum := startTestNode(t, func(c *config.Config) { c.Trunk.InboundCIDRs = []string{"127.0.0.0/8"} })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mustRun(t, "merchant", "add", "m1", "--name", "Shop One")
	mustRun(t, "account", "add", "m1", "+8613700137000", "--password", "lookalike-secret")
	mustRun(t, "number", "add", "17000000001")
	var b struct{ Host, Extension string }
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "binding", "create", "--merchant", "m1", "--order", "o1",
		"--consignee", consignee, "--order-status", "shipped", "--format", "json")), &b))

	call := func(p *sipua.Softphone, dialled string) {
		t.Helper()
		d, err := p.Call(ctx, vnum, dialled)
		require.NoError(t, err)
		_, err = carrier.NextSession(15 * time.Second)
		require.NoError(t, err)
		require.NoError(t, d.Bye(ctx))
		require.Eventually(t, func() bool { return n.sip.ActiveCalls() == 0 }, 10*time.Second, 20*time.Millisecond)
	}
	courier, err := sipua.NewSoftphone("13700137000", "", nil)
	require.NoError(t, err)
	t.Cleanup(courier.Close)
	call(courier, b.Host+"-"+b.Extension)
	inv, err := carrier.NextInvite(time.Second)
	require.NoError(t, err)
	require.Equal(t, consignee, inv.Recipient.User)

	consigneePhone, err := sipua.NewSoftphone(consignee, "", nil)
	require.NoError(t, err)
	t.Cleanup(consigneePhone.Close)
	call(consigneePhone, b.Host)
	inv, err = carrier.NextInvite(time.Second)
	require.NoError(t, err)
	require.Equal(t, "13700137000", inv.Recipient.User, "the call back reaches the courier on the trunk")

	var cdrs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "cdr", "list", "--format", "json")), &cdrs))
	require.Len(t, cdrs, 2)
	for _, c := range cdrs {
		require.Equal(t, "answered", c["disposition"])
		require.NotContains(t, c, "caller_kind", "the JSON export keeps the SPEC §7 fields")
	}
}
