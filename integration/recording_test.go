package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// TestCrashLeavesPlayableRecording kills `vnum serve` (SIGKILL, by its
// PID) during a recorded call: the call's WAV file is playable as it was
// left, its header counting no more than the file holds, with the
// caller's audio in its left channel; after a restart the interrupted
// call's record still says recorded and `vnum recording get` hands out
// the file byte for byte.
func TestCrashLeavesPlayableRecording(t *testing.T) {
	t.Parallel()
	e, phone, to := answeredCall(t, "recording:\n  mode: on\n  dir: rec\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e.waitCallState("bridged", 20*time.Second)
	talk, stopTalk := context.WithCancel(ctx)
	defer stopTalk()
	go func() { _ = sipua.SendAudio(talk, phone.RTP, to, 0x5EED, 3000) }()

	// The header is brought up to date every second: wait until it
	// counts two seconds, then kill.
	dir := filepath.Join(e.dir, "rec")
	var path string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if files, _ := filepath.Glob(filepath.Join(dir, "*.wav")); len(files) == 1 {
			path = files[0]
			if h, err := os.ReadFile(path); err == nil && len(h) >= 44 && binary.LittleEndian.Uint32(h[40:]) >= 2*8000*4 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recording with two seconds counted in %s within 30 s", dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pid := e.serve.cmd.Process.Pid
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	_, err := e.serve.wait(10 * time.Second)
	require.NoError(t, err)
	stopTalk()

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "RIFF", string(raw[0:4]))
	require.Equal(t, "WAVE", string(raw[8:12]))
	require.Equal(t, "fmt ", string(raw[12:16]))
	require.EqualValues(t, 2, binary.LittleEndian.Uint16(raw[22:]), "channels")
	require.EqualValues(t, 8000, binary.LittleEndian.Uint32(raw[24:]), "rate")
	require.EqualValues(t, 16, binary.LittleEndian.Uint16(raw[34:]), "bits")
	require.Equal(t, "data", string(raw[36:40]))
	data := binary.LittleEndian.Uint32(raw[40:])
	require.EqualValues(t, 36+data, binary.LittleEndian.Uint32(raw[4:]), "the RIFF size agrees with the data's")
	require.LessOrEqual(t, int(data), len(raw)-44, "the header counts no more than the file holds")
	require.Zero(t, data%4, "whole frames")
	loud := 0
	for i := 44; i+4 <= 44+int(data); i += 4 {
		if s := int16(binary.LittleEndian.Uint16(raw[i:])); s > 1000 || s < -1000 {
			loud++
		}
	}
	require.Greater(t, loud, 8000, "the caller's tone in the left channel")

	e.serve = startProc(t, "vnum serve (restarted)", e.dir, filepath.Join(e.dir, "vnum-serve-restarted.log"),
		cleanEnviron(), e.bin, "--config", e.config, "serve")
	e.waitSIP(20 * time.Second)
	rows, out := e.cdrs()
	require.Len(t, rows, 1, "cdr list: %s", out)
	require.Equal(t, "interrupted", rows[0].Disposition, out)
	require.True(t, rows[0].Recorded, "an interrupted call keeps its recording: %s", out)
	var id string
	require.NoError(t, json.Unmarshal(rows[0].ID, &id))
	require.Equal(t, id+".wav", filepath.Base(path), "the file is named after the call's record")

	saved := filepath.Join(t.TempDir(), "evidence.wav")
	e.run("recording", "get", id, "-o", saved)
	got, err := os.ReadFile(saved)
	require.NoError(t, err)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(after, got), "recording get hands out the file")
	require.NotContains(t, out, consignee)
}

// answeredCall runs `vnum serve` (its configuration with extraYAML added)
// with a carrier that answers and a media timeout of 120 s (the test
// decides whether RTP flows), seeds the binding, and places one call
// from the merchant's softphone through the IVR to it: it returns once
// the carrier has answered, with the env, the caller's phone and vnum's
// media address for the caller.
func answeredCall(t *testing.T, extraYAML string) (*env, *sipua.Softphone, netip.AddrPort) {
	t.Helper()
	e := newEnv(t, extraYAML)
	carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
	require.NoError(t, err)
	t.Cleanup(carrier.Close)
	e.setYAML(fmt.Sprintf("sip:127.0.0.1:%d;", e.carrierPort), fmt.Sprintf("sip:127.0.0.1:%d;", carrier.Addr.Port()))
	e.setYAML("  timeout: 20s", "  timeout: 120s")
	b := e.seed()
	e.startServe()

	phone, err := sipua.NewSoftphone(account, password, nil)
	require.NoError(t, err)
	t.Cleanup(phone.Close)
	// The call outlives this function: its context ends with the test.
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	vnum := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(e.sipPort))
	d, err := phone.Call(ctx, vnum, hostNumber)
	require.NoError(t, err)
	to, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	require.NoError(t, sipua.SendDigits(phone.RTP, to, 101, b.Extension))
	_, err = carrier.NextSession(20 * time.Second)
	require.NoError(t, err, "vnum never bridged the call to the carrier")
	return e, phone, to
}
