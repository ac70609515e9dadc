// Package integration drives the built vnum binary from the outside, as real
// SIP peers would: SIPp scenarios (testdata/sipp) play the merchant's
// softphone and the carrier trunk, baresip plays a real softphone, and the
// tests read the CDRs back through the vnum command line.
//
// The tests skip when sipp or baresip is not on PATH, and fail instead when
// VNUMTEST_REQUIRE_SIPP=1 (CI installs both: apt-get install sip-tester baresip).
// They build ./cmd/vnum once per run, or use the binary named by VNUMTEST_BIN.
// Everything listens on 127.0.0.1 only, on ports leased at run time from
// internal/testport (held by the test until the program binds them),
// and every process a test starts is stopped by its PID when the test ends.
//
//	go test ./integration -v -count=1
//	VNUMTEST_REQUIRE_SIPP=1 go test ./integration -count=1
//
// TestExportsStayFlat exports 200,000 call records through the binary and
// measures its peak memory; VNUMTEST_EXPORT_ROWS=1000000 (CI) makes it a
// million. It builds ./integration/exportcheck, which parses the exports.
//
// SIPp's play_pcap_audio sends RTP through a raw socket, so the tests that
// play audio or DTMF need root or CAP_NET_RAW; they skip (or fail, with
// VNUMTEST_REQUIRE_SIPP=1) without it.
package integration
