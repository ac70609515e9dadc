package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// newRegister builds a REGISTER of phone's account to vnum, as a
// softphone sends it before any challenge.
func newRegister(phone *sipua.Softphone, vnum netip.AddrPort) *sip.Request {
	uri := sip.Uri{Scheme: "sip", Host: vnum.Addr().String(), Port: int(vnum.Port())}
	req := sip.NewRequest(sip.REGISTER, uri)
	aor := sip.Uri{Scheme: "sip", User: phone.User, Host: vnum.Addr().String()}
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	req.AppendHeader(from)
	req.AppendHeader(&phone.Contact)
	req.AppendHeader(sip.NewHeader("Expires", "3600"))
	return req
}

// challenged is an unsigned REGISTER and vnum's 401 to it, whose nonce
// the test answers later.
type challenged struct {
	req *sip.Request
	res *sip.Response
}

// challenge sends an unsigned REGISTER of phone's account and returns it
// with vnum's 401.
func challenge(ctx context.Context, t *testing.T, phone *sipua.Softphone, vnum netip.AddrPort) challenged {
	t.Helper()
	req := newRegister(phone, vnum)
	res, err := phone.Client.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, sip.StatusUnauthorized, int(res.StatusCode), res.StartLine())
	return challenged{req: req, res: res}
}

// answer answers an earlier challenge with user and password, on a copy
// of the challenged REGISTER, and returns vnum's final status.
func answer(ctx context.Context, t *testing.T, phone *sipua.Softphone, c challenged, user, password string) int {
	t.Helper()
	res, err := phone.Client.DoDigestAuth(ctx, c.req.Clone(), c.res, sipgo.DigestAuth{Username: user, Password: password})
	require.NoError(t, err)
	return int(res.StatusCode)
}

// accountRegistered reports what `vnum account list` says of user.
func accountRegistered(t *testing.T, merchant, user string) bool {
	t.Helper()
	var as []struct {
		User       string
		Registered bool
	}
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "account", "list", merchant, "--format", "json")), &as))
	for _, a := range as {
		if a.User == user {
			return a.Registered
		}
	}
	t.Fatalf("account %s not listed", user)
	return false
}

// TestAccountChangesTakeEffectThroughServe runs a node on a real store and
// changes a login with the CLI while it runs: after a password change the
// next request needs the new password, even one answering a nonce issued
// before the change, and the old registration is gone; after a removal
// the login is refused, nonces issued before included.
func TestAccountChangesTakeEffectThroughServe(t *testing.T) {
	_, _, vnum := startTestNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mustRun(t, "merchant", "add", "m1")
	mustRun(t, "account", "add", "m1", "alice", "--password", "alice-secret")

	phone, err := sipua.NewSoftphone("alice", "alice-secret", nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	require.NoError(t, phone.Register(ctx, vnum))
	require.True(t, accountRegistered(t, "m1", "alice"))

	// A nonce vnum issued before the change.
	before := challenge(ctx, t, phone, vnum)
	mustRun(t, "account", "password", "m1", "alice", "--password", "rotated-secret")
	require.False(t, accountRegistered(t, "m1", "alice"), "the registration made with the old password is gone")

	require.Equal(t, sip.StatusForbidden, answer(ctx, t, phone, before, "alice", "alice-secret"),
		"the old password, on a nonce from before the change")
	res, err := phone.RegisterFor(ctx, vnum, 3600)
	require.NoError(t, err)
	require.Equal(t, sip.StatusForbidden, int(res.StatusCode), "the old password, on a fresh nonce")
	require.Equal(t, sip.StatusOK, answer(ctx, t, phone, before, "alice", "rotated-secret"),
		"the new password works at once, on the nonce it was challenged with")
	rotated, err := sipua.NewSoftphone("alice", "rotated-secret", nil)
	require.NoError(t, err)
	t.Cleanup(rotated.Close)
	require.NoError(t, rotated.Register(ctx, vnum))
	require.True(t, accountRegistered(t, "m1", "alice"))

	// Removed: refused on the nonce issued before and on a fresh one.
	before = challenge(ctx, t, rotated, vnum)
	mustRun(t, "account", "remove", "m1", "alice")
	require.Equal(t, sip.StatusForbidden, answer(ctx, t, rotated, before, "alice", "rotated-secret"),
		"a removed login, on a nonce from before the removal")
	res, err = rotated.RegisterFor(ctx, vnum, 3600)
	require.NoError(t, err)
	require.Equal(t, sip.StatusForbidden, int(res.StatusCode), "a removed login, on a fresh nonce")
	d, err := rotated.Call(ctx, vnum, "17000000001")
	if d != nil {
		t.Cleanup(func() { _ = d.Close() })
	}
	require.Error(t, err, "a removed login cannot place a call")
	require.Contains(t, err.Error(), "403")
}
