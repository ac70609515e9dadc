package sip

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// TestReload: a running server takes a new trunk and new security limits
// for its next calls; a reload it cannot apply changes nothing.
func TestReload(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	second, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
	require.NoError(t, err)
	t.Cleanup(second.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	r := e.srv.opts.reloadable()
	bad := r
	bad.TrunkOutbound = "sip:[::1"
	require.Error(t, e.srv.Reload(bad))
	e.requireCallBridges() // still the first carrier

	r.TrunkOutbound = "sip:" + second.Addr.String() + ";transport=udp"
	r.NumberFormat = "e164"
	r.InvalidExtensions = 1
	require.NoError(t, e.srv.Reload(r))
	d, err := e.phone.Call(ctx, e.vnum, testHost+"-"+testExt)
	require.NoError(t, err)
	inv := nextInvite(t, second)
	require.Equal(t, testConsignee, inv.Recipient.User, "the new number format")
	nextSession(t, second)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	require.Zero(t, e.carrier.Pending(), "the old carrier gets nothing")

	// security.invalid_extensions 1: one wrong extension and the next
	// call is refused.
	_, err = e.phone.Call(ctx, e.vnum, testHost+"-9999")
	requireRefusedUnanswered(t, err, 404, e.phone.Received())
	e.router.waitEnded(t)
	_, err = e.phone.Call(ctx, e.vnum, testHost+"-"+testExt)
	requireRefusedUnanswered(t, err, 403, e.phone.Received())
	e.waitNoCalls()
}
