package sip

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
	"github.com/vnum/vnum/sip/sipua"
)

// TestRefusalStatus pins the refusals table: each row is an error the
// INVITE path raises (the comment says where), the status it gets and the
// reason phrase sent with it.
func TestRefusalStatus(t *testing.T) {
	for name, tc := range map[string]struct {
		err    error
		code   int
		phrase string
	}{
		"missing headers, dialog refused": {ErrBadRequest, 400, "Bad Request"},
		"extension not digits":            {fmt.Errorf("x: %w", ErrBadRequest), 400, "Bad Request"},
		"wrong password":                  {ErrBadCredentials, 403, "Forbidden"},
		"source blocked":                  {ErrBlocked, 403, "Forbidden"},
		"extension walking":               {ErrWalking, 403, "Forbidden"},
		"not 11 digits, not in the pool":  {fmt.Errorf("x: %w", ErrNotHostNumber), 404, "Not Found"},
		"unparsable SDP":                  {fmt.Errorf("parse: %w", media.ErrBadSDP), 488, "Not Acceptable Here"},
		"no audio":                        {media.ErrNoAudio, 488, "Not Acceptable Here"},
		"no G.711":                        {fmt.Errorf("%w: PCMU or PCMA required", media.ErrNoCodec), 488, "Not Acceptable Here"},
		"draining":                        {ErrDraining, 503, "Service Unavailable"},
		"store slower than store.timeout": {fmt.Errorf("%w: %w", ErrStoreSlow, context.DeadlineExceeded), 503, "Service Unavailable"},
		"calls.max_active reached":        {frontdoor.ErrMaxActive, 503, "Service Unavailable"},
		"security.invite_rate exceeded":   {frontdoor.ErrInviteRate, 503, "Service Unavailable"},
		"process saturated":               {frontdoor.ErrSaturated, 503, "Service Unavailable"},
		"no free RTP ports":               {frontdoor.ErrNoPorts, 503, "Service Unavailable"},
		"store failed":                    {errors.New("disk I/O error"), 500, "Server Internal Error"},
	} {
		t.Run(name, func(t *testing.T) {
			code := refusalFor(tc.err).code
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.phrase, reasonPhrase(code))
		})
	}
}

// TestRefusalsOnTheWire sends the INVITEs that the refusals table answers
// and checks the status each gets on the wire, Retry-After with a 503.
func TestRefusalsOnTheWire(t *testing.T) {
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	refused := func(p *sipua.Softphone, dialled string) *sip.Response {
		t.Helper()
		_, err := p.Call(ctx, e.vnum, dialled)
		var dr *sipgo.ErrDialogResponse
		require.ErrorAs(t, err, &dr, "%s must be refused", dialled)
		return dr.Res
	}
	require.Equal(t, 404, refused(e.phone, "1700000").StatusCode, "not 11 digits")
	require.Equal(t, 404, refused(e.phone, "17099999999").StatusCode, "not in the pool")
	require.Equal(t, 404, refused(e.phone, "17099999999-"+testExt).StatusCode, "a direct dial of a number not in the pool")
	require.Equal(t, 400, refused(e.phone, testHost+";ext=12a4").StatusCode, "extension not digits")

	wrong, err := sipua.NewSoftphone("alice", "wrong", nil)
	require.NoError(t, err)
	t.Cleanup(wrong.Close)
	require.Equal(t, 403, refused(wrong, testHost).StatusCode, "wrong password")

	g729, err := sipua.NewSoftphone("alice", "s3cret", nil)
	require.NoError(t, err)
	t.Cleanup(g729.Close)
	g729.Codecs = []media.Codec{{PT: 18, Name: "G729", Rate: 8000, Channels: 1}}
	res := refused(g729, testHost)
	require.Equal(t, 488, res.StatusCode, "no G.711")
	require.NotNil(t, res.GetHeader("Warning"))

	e.srv.door.Drain()
	res = refused(e.phone, testHost)
	require.Equal(t, 503, res.StatusCode, "draining")
	require.NotNil(t, res.GetHeader("Retry-After"))
	require.Zero(t, e.srv.CallsTotal(), "no refusal became a call")
}

// TestReplayedNonceChallengedAgain: a request whose digest repeats a
// nonce-count already used is not refused with 403 but challenged again
// with a fresh, stale nonce (RFC 7616 §3.4, §3.3 stale=true), so that a
// phone that reuses a nonce logs in again instead of being locked out.
func TestReplayedNonceChallengedAgain(t *testing.T) {
	e := newTestEnv(t, "answer", nil)
	client := newRawClient(t, "replayer")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	vnum := sip.Uri{Scheme: "sip", Host: e.vnum.Addr().String(), Port: int(e.vnum.Port())}
	req := aliceRequest(sip.REGISTER, vnum, vnum.Host)
	res, err := client.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 401, res.StatusCode)
	chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	require.NoError(t, err)
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: vnum.String(), Username: "alice", Password: "s3cret", Count: 1})
	require.NoError(t, err)
	signed := func() *sip.Response {
		t.Helper()
		r := req.Clone()
		r.RemoveHeader("Via")
		r.CSeq().SeqNo++
		req.CSeq().SeqNo++
		r.AppendHeader(sip.NewHeader("Authorization", cred.String()))
		res, err := client.Do(ctx, r)
		require.NoError(t, err)
		return res
	}
	require.Equal(t, 200, signed().StatusCode, "first use of the nonce")
	again := signed()
	require.Equal(t, 401, again.StatusCode, "a replayed nonce-count is challenged again, not refused")
	fresh, err := digest.ParseChallenge(again.GetHeader("WWW-Authenticate").Value())
	require.NoError(t, err)
	require.NotEqual(t, chal.Nonce, fresh.Nonce)
	require.True(t, fresh.Stale)
}

// TestLegBReason pins the legBFailures table as legBFailed uses it.
func TestLegBReason(t *testing.T) {
	for code, want := range map[int]endReason{
		486: reasonBusy, 600: reasonBusy,
		408: reasonNoAnswer, 480: reasonNoAnswer,
		403: reasonRejected, 404: reasonRejected, 410: reasonRejected, 484: reasonRejected,
		603: reasonRejected, 604: reasonRejected, 415: reasonRejected,
		500: reasonTrunkFailed, 502: reasonTrunkFailed, 503: reasonTrunkFailed, 606: reasonTrunkFailed,
	} {
		require.Equal(t, want, legBReason(code), "leg B %d", code)
	}
}
