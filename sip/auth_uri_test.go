package sip

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/require"
)

// TestDigestURIBoundToRequestURI: credentials vouch for the Request-URI
// they sign and no other (RFC 3261 §22.4, RFC 7616 §3.4.6). A sipgo client
// signs one URI and sends another: 400, for REGISTER (Authorization) and
// MESSAGE (Proxy-Authorization); signed right, the same requests pass.
func TestDigestURIBoundToRequestURI(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	client := newRawClient(t, "signer")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	vnum := sip.Uri{Scheme: "sip", Host: e.vnum.Addr().String(), Port: int(e.vnum.Port())}
	other := sip.Uri{Scheme: "sip", User: "17000000002", Host: "elsewhere.example"}
	for _, tc := range []struct {
		method            sip.RequestMethod
		target            sip.Uri
		challenge, answer string
		ok                int
	}{
		{sip.REGISTER, vnum, "WWW-Authenticate", "Authorization", 200},
		{sip.MESSAGE, sip.Uri{Scheme: "sip", User: testHost, Host: vnum.Host, Port: vnum.Port}, "Proxy-Authenticate", "Proxy-Authorization", 405},
	} {
		send := func(signed string) *sip.Response {
			t.Helper()
			req := aliceRequest(tc.method, tc.target, vnum.Host)
			res, err := client.Do(ctx, req)
			require.NoError(t, err)
			require.Contains(t, []int{401, 407}, res.StatusCode)
			chal, err := digest.ParseChallenge(res.GetHeader(tc.challenge).Value())
			require.NoError(t, err)
			cred, err := digest.Digest(chal, digest.Options{Method: string(tc.method), URI: signed, Username: "alice", Password: "s3cret", Count: 1})
			require.NoError(t, err)
			signedReq := req.Clone()
			signedReq.RemoveHeader("Via")
			signedReq.CSeq().SeqNo++
			signedReq.AppendHeader(sip.NewHeader(tc.answer, cred.String()))
			res, err = client.Do(ctx, signedReq)
			require.NoError(t, err)
			return res
		}
		require.Equal(t, 400, send(other.String()).StatusCode, "%s signed for another URI", tc.method)
		require.Equal(t, tc.ok, send(tc.target.String()).StatusCode, "%s signed right", tc.method)
	}
}

// newRawClient is a sipgo client on loopback with no dialog layer: the
// test builds every request itself, credentials included.
func newRawClient(t *testing.T, name string) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ua.Close() })
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(t, err)
	return client
}

// aliceRequest is a request from account alice (From and To her address on
// host, a Contact on loopback), without credentials.
func aliceRequest(method sip.RequestMethod, target sip.Uri, host string) *sip.Request {
	req := sip.NewRequest(method, target)
	aor := sip.Uri{Scheme: "sip", User: "alice", Host: host}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1"}})
	return req
}
