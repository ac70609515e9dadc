package sip

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/sip/sipua"
)

func TestParseDialled(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		user, uriExt string
		want         Dialled
		err          error
	}{
		"plain":            {user: "17000000001", want: Dialled{Host: "17000000001"}},
		"+86":              {user: "+8617000000001", want: Dialled{Host: "17000000001"}},
		"86":               {user: "8617000000001", want: Dialled{Host: "17000000001"}},
		";ext=":            {user: "17000000001;ext=1234", want: Dialled{Host: "17000000001", Extension: "1234"}},
		"dash":             {user: "17000000001-1234", want: Dialled{Host: "17000000001", Extension: "1234"}},
		"comma":            {user: "17000000001,1234", want: Dialled{Host: "17000000001", Extension: "1234"}},
		"comma pauses":     {user: "17000000001,,1234", want: Dialled{Host: "17000000001", Extension: "1234"}},
		"uri ext param":    {user: "17000000001", uriExt: "77", want: Dialled{Host: "17000000001", Extension: "77"}},
		"short":            {user: "1700000000", err: ErrNotHostNumber},
		"letters":          {user: "1700000000a", err: ErrNotHostNumber},
		"empty":            {user: "", err: ErrNotHostNumber},
		"junk extension":   {user: "17000000001-12a4", err: ErrBadRequest},
		"header injection": {user: "17000000001-12\r\nX: y", err: ErrBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseDialled(tc.user, tc.uriExt)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseInfoDTMF(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		ct, body string
		want     rune
		ok       bool
	}{
		"dtmf-relay":      {ct: "application/dtmf-relay", body: "Signal=5\r\nDuration=160\r\n", want: '5', ok: true},
		"dtmf-relay hash": {ct: "application/dtmf-relay", body: "signal= #\r\n", want: '#', ok: true},
		"dtmf":            {ct: "application/dtmf", body: "7", want: '7', ok: true},
		"junk signal":     {ct: "application/dtmf-relay", body: "Signal=X\r\n"},
		"two digits":      {ct: "application/dtmf", body: "12"},
		"other type":      {ct: "text/plain", body: "5"},
		"empty":           {ct: "application/dtmf-relay"},
	} {
		t.Run(name, func(t *testing.T) {
			req := sip.NewRequest(sip.INFO, sip.Uri{Host: "127.0.0.1"})
			req.AppendHeader(sip.NewHeader("Content-Type", tc.ct))
			req.SetBody([]byte(tc.body))
			got, ok := parseInfoDTMF(req)
			require.Equal(t, tc.ok, ok)
			if ok {
				require.Equal(t, tc.want, got)
			}
		})
	}
}

func FuzzParseInfoDTMF(f *testing.F) {
	f.Add("application/dtmf-relay", "Signal=1\r\nDuration=100")
	f.Add("application/dtmf", "#")
	f.Fuzz(func(t *testing.T, ct, body string) {
		req := sip.NewRequest(sip.INFO, sip.Uri{Host: "127.0.0.1"})
		req.AppendHeader(sip.NewHeader("Content-Type", ct))
		req.SetBody([]byte(body))
		if d, ok := parseInfoDTMF(req); ok && !(d >= '0' && d <= '9' || d == '*' || d == '#' || d >= 'A' && d <= 'D' || d >= 'a' && d <= 'd') {
			t.Fatalf("digit %q from %q", d, body)
		}
	})
}

// TestStatusForReason pins what an unanswered caller hears, and the CDR's
// disposition and hangup_by, for every way a call ends.
func TestStatusForReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r           endReason
		code        int
		phrase      string
		disposition callrec.Disposition
		hangupBy    callrec.HangupBy
	}{
		{reasonCallerHangup, 487, "Request Terminated", "cancelled", "caller"},
		{reasonCalleeHangup, 200, "OK", "failed", "callee"},
		{reasonCancelled, 487, "Request Terminated", "cancelled", "caller"},
		{reasonNoAck, 500, "Server Internal Error", "failed", "system"},
		{reasonInvalidExtension, 404, "Not Found", "invalid_extension", "system"},
		{reasonExpired, 410, "Gone", "expired", "system"},
		{reasonBusy, 486, "Busy Here", "busy", "callee"},
		{reasonNoAnswer, 480, "Temporarily Unavailable", "no_answer", "system"},
		{reasonRejected, 480, "Temporarily Unavailable", "rejected", "callee"},
		{reasonTrunkFailed, 503, "Service Unavailable", "failed", "system"},
		{reasonMediaTimeout, 500, "Server Internal Error", "failed", "system"},
		{reasonMaxDuration, 500, "Server Internal Error", "failed", "system"},
		{reasonShutdown, 503, "Service Unavailable", "failed", "system"},
		{reasonStoreSlow, 503, "Service Unavailable", "failed", "system"},
		{reasonInternal, 500, "Server Internal Error", "failed", "system"},
	} {
		t.Run(tc.r.Error(), func(t *testing.T) {
			code, phrase := statusForReason(tc.r)
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.phrase, phrase)
			require.Equal(t, tc.disposition, tc.r.disposition(false))
			require.Equal(t, callrec.Disposition("answered"), tc.r.disposition(true), "an answered call is answered whatever ended it")
			require.Equal(t, tc.hangupBy, tc.r.hangupBy())
		})
	}
}

// TestBadInput sends broken SDP, junk datagrams and junk RTP: each gets a
// clear answer or is dropped, and vnum goes on taking calls.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Junk datagrams and a truncated request at the SIP port.
	raw, err := net.Dial("udp", e.vnum.String())
	require.NoError(t, err)
	defer raw.Close()
	for _, junk := range []string{"\x00\x01\x02", "INVITE\r\n\r\n", "INVITE sip:17000000001@127.0.0.1 SIP/2.0\r\nVia: bogus\r\n\r\n",
		"SIP/2.0 200 OK\r\n\r\n", string(make([]byte, 1400))} {
		_, err := raw.Write([]byte(junk))
		require.NoError(t, err)
	}

	// Broken and codec-less SDP: 488 with a Warning.
	for name, body := range map[string]string{
		"garbage":   "this is not sdp",
		"no codecs": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
		"no audio":  "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n",
	} {
		uri := sip.Uri{Scheme: "sip", User: testHost, Host: "127.0.0.1", Port: int(e.vnum.Port())}
		req := sip.NewRequest(sip.INVITE, uri)
		req.SetBody([]byte(body))
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.AppendHeader(&e.phone.Contact)
		res, err := e.phone.Client.Do(ctx, req)
		require.NoError(t, err, name)
		require.Equal(t, 407, res.StatusCode, name)
		res, err = e.phone.Client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "alice", Password: "s3cret"})
		require.NoError(t, err, name)
		require.Equal(t, 488, res.StatusCode, name)
		require.NotNil(t, res.GetHeader("Warning"), name)
	}

	// An unknown number: 404.
	d, err := e.phone.Invite(ctx, e.vnum, "19999999999")
	require.NoError(t, err)
	err = d.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "alice", Password: "s3cret"})
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(t, err, &dr)
	require.Equal(t, 404, dr.Res.StatusCode)

	// Junk RTP and junk telephone-events during the IVR, then the right
	// digits: the call goes through.
	d, err = e.phone.Call(ctx, e.vnum, testHost)
	require.NoError(t, err)
	to, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	rtpRaw, err := net.Dial("udp", to.String())
	require.NoError(t, err)
	defer rtpRaw.Close()
	for _, junk := range [][]byte{{0x80}, {0x80, 101, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xff}, make([]byte, 12), {0x80, 101, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1, 99, 0x80, 0, 0}} {
		_, err := rtpRaw.Write(junk)
		require.NoError(t, err)
	}
	require.NoError(t, sipua.SendDigits(e.phone.RTP, to, 101, testExt))
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
	require.Equal(t, "answered", string(e.router.waitEnded(t).Disposition))
	e.waitNoCalls()
}

func TestMaskNumbers(t *testing.T) {
	t.Parallel()
	require.Equal(t, "INVITE sip:[number]@10.0.0.1 SIP/2.0", maskNumbers("INVITE sip:13800138000@10.0.0.1 SIP/2.0"))
	require.Equal(t, "to [number]", maskNumbers("to +8613800138000"))
	require.Equal(t, "port 5060, status 486", maskNumbers("port 5060, status 486"))
}

// TestMissingHeaders: a request with no From, To, Call-ID or Contact gets
// 400, and vnum stays up.
func TestMissingHeaders(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) {
		o.InboundCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	conn, err := net.Dial("udp", e.vnum.String())
	require.NoError(t, err)
	defer conn.Close()
	local := conn.LocalAddr().String()
	for _, drop := range []string{"From", "To", "Call-ID", "Contact"} {
		lines := []string{
			"INVITE sip:17000000001@" + e.vnum.String() + " SIP/2.0",
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + drop,
			"From: <sip:13700137000@127.0.0.1>;tag=1",
			"To: <sip:17000000001@127.0.0.1>",
			"Call-ID: missing-" + drop,
			"CSeq: 1 INVITE",
			"Contact: <sip:13700137000@" + local + ">",
			"Content-Length: 0",
		}
		var msg string
		for _, l := range lines {
			if !strings.HasPrefix(l, drop+":") {
				msg += l + "\r\n"
			}
		}
		_, err := conn.Write([]byte(msg + "\r\n"))
		require.NoError(t, err)
		buf := make([]byte, 2048)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(3*time.Second)))
		n, err := conn.Read(buf)
		require.NoError(t, err, "no answer without %s", drop)
		require.Contains(t, string(buf[:n]), "SIP/2.0 400", "without %s", drop)
	}
	// Still taking calls.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, _ := e.dialAndKey(ctx, testHost+"-"+testExt, "")
	nextSession(t, e.carrier)
	require.NoError(t, d.Bye(ctx))
}
