package sip

import (
	"context"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/require"
)

// accountsOnly is the Accounts role alone: the digest secrets of logins.
type accountsOnly map[string]Account

func (a accountsOnly) Account(_ context.Context, user string) (Account, error) {
	acct, ok := a[user]
	if !ok {
		return Account{}, ErrUnknownAccount
	}
	return acct, nil
}

// TestAuthenticatorNeedsAccountsOnly: digest authentication depends on the
// Accounts role only (no directory, no recorder): with nothing but the
// accounts it admits the right password and refuses a wrong one or an
// unknown user (RFC 7616 §3.4).
func TestAuthenticatorNeedsAccountsOnly(t *testing.T) {
	accounts := accountsOnly{"alice": {User: "alice", Merchant: "m1",
		HA1MD5: HA1("MD5", "alice", "s3cret"), HA1SHA256: HA1("SHA-256", "alice", "s3cret")}}
	auth, err := newAuthenticator(accounts, []string{"MD5"}, 0, 0)
	require.NoError(t, err)
	ruri := sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 5060}
	sign := func(user, password string) string {
		t.Helper()
		chals, err := auth.challenges(false)
		require.NoError(t, err)
		chal, err := digest.ParseChallenge(chals[0])
		require.NoError(t, err)
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: ruri.String(),
			Username: user, Password: password, Count: 1})
		require.NoError(t, err)
		return cred.String()
	}
	ctx := context.Background()

	acct, err := auth.verify(ctx, "REGISTER", ruri, sign("alice", "s3cret"))
	require.NoError(t, err)
	require.Equal(t, accounts["alice"], acct)

	_, err = auth.verify(ctx, "REGISTER", ruri, sign("alice", "wrong"))
	require.ErrorIs(t, err, ErrBadCredentials)
	_, err = auth.verify(ctx, "REGISTER", ruri, sign("mallory", "s3cret"))
	require.ErrorIs(t, err, ErrBadCredentials)
}
