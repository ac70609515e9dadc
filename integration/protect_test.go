package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// confirmYAML turns on the notice with keys for every call.
var confirmYAML = yamlEdit{"calls:\n", "protection:\n  announce: confirm\n  confirm_timeout: 5s\ncalls:\n"}

// TestSippConsigneeKeys: SIPp as the consignee answers, hears the notice
// and keys over RFC 4733 (SIPp's own DTMF captures): 1 takes the call,
// which is billed as answered; 9 declines it (603 to the caller, free)
// and blocks the merchant, whose next call is refused before B rings.
// The carrier's checks and the Go scan keep both sides private.
func TestSippConsigneeKeys(t *testing.T) {
	t.Parallel()
	pcaps := sippPrereqs(t)
	for _, tc := range []struct {
		key    string
		caller string
	}{
		{"1", "uac_direct.xml"},
		{"9", "uac_until_hangup.xml"},
	} {
		t.Run("key "+tc.key, func(t *testing.T) {
			e, b := servedEnv(t, nil, confirmYAML)
			stage := newStage(t, pcaps)
			key := dtmfPcaps(t, pcaps, stage, tc.key)
			require.NoError(t, os.Rename(filepath.Join(stage, key[0]), filepath.Join(stage, "consignee_key.pcap")))
			carrier := startCarrier(t, stage, e.carrierPort, "uas_consignee_keys.xml", 40*time.Second)
			args := []string{hostNumber + "-" + b.Extension}
			if tc.key == "1" {
				args = append(args, "-d", "2000")
			}
			caller := startSoftphone(t, stage, e, scenarioPath(t, tc.caller), 40*time.Second, args[0], args[1:]...)
			requireBothSucceed(caller, carrier, 50*time.Second, 20*time.Second)
			if tc.key == "1" {
				requireAnsweredCall(t, e, b, caller, carrier)
				return
			}
			requirePrivacy(t, caller, carrier)
			rows := e.waitCDRs(1, 10*time.Second)
			requireCDR(t, rows[0], "declined", "callee", 0)
			require.Contains(t, caller.messages(), "SIP/2.0 603 Decline")
			blocks := e.run("block", "list")
			require.NotContains(t, blocks, consignee)
			require.Contains(t, blocks, "consignee")

			// The merchant's next call never reaches the carrier: no sipp
			// carrier runs now, and the caller gets 603 as before.
			again := startSoftphone(t, stage, e, scenarioPath(t, "uac_until_hangup.xml"), 30*time.Second,
				hostNumber+"-"+b.Extension)
			again.requireSuccess(40 * time.Second)
			rows = e.waitCDRs(2, 10*time.Second)
			dispositions := []string{rows[0].Disposition, rows[1].Disposition}
			require.ElementsMatch(t, []string{"declined", "blocked"}, dispositions, strings.Join(dispositions, ","))
		})
	}
}
