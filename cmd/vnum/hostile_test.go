package main

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/config"
)

// TestHostileMetricsThroughServe: a datagram that is not SIP and a request
// with 80 Subject header fields sent to a served node show in /metrics as
// vnum_sip_malformed_total{transport="udp"} and
// vnum_sip_over_limit_total{limit="same_header"}, the other labels at
// zero; the request got its 513.
func TestHostileMetricsThroughServe(t *testing.T) {
	n, _, vnum := startTestNode(t, nil)
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(vnum))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = conn.Write([]byte("HELLO 13800138000\r\n\r\n"))
	require.NoError(t, err)
	local := conn.LocalAddr().String()
	lines := []string{"OPTIONS sip:" + vnum.String() + " SIP/2.0",
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-hostile-1;rport", "Max-Forwards: 70",
		"From: <sip:probe@" + local + ">;tag=1", "To: <sip:" + vnum.String() + ">", "Call-ID: hostile-1", "CSeq: 1 OPTIONS"}
	for i := range 80 {
		lines = append(lines, "Subject: "+strconv.Itoa(i))
	}
	_, err = conn.Write([]byte(strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 65536)
	k, err := conn.Read(buf)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(buf[:k]), "SIP/2.0 513 "), "%s", buf[:k])

	c := config.Default()
	c.Admin.Listen = "127.0.0.1:0"
	url := startTestAdmin(t, c, n.store, n.stats())
	require.Eventually(t, func() bool {
		_, body := get(t, url+"/metrics", "")
		return strings.Contains(body, `vnum_sip_malformed_total{transport="udp"} 1`)
	}, 10*time.Second, 20*time.Millisecond)
	status, body := get(t, url+"/metrics", "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `vnum_sip_malformed_total{transport="tcp"} 0`)
	require.Contains(t, body, `vnum_sip_over_limit_total{limit="same_header"} 1`)
	for _, limit := range []string{"header_fields", "body", "media_lines"} {
		require.Contains(t, body, `vnum_sip_over_limit_total{limit="`+limit+`"} 0`)
	}
}
