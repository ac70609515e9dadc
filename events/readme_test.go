package events

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readmeBlock returns the fenced block of lang that follows the line
// intro in the README's "Call events" section.
func readmeBlock(t *testing.T, intro, lang string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "\n## Call events\n")
	require.GreaterOrEqual(t, i, 0, "README has a Call events section")
	s = s[i:]
	i = strings.Index(s, "\n"+intro)
	require.GreaterOrEqual(t, i, 0, "README's Call events: %q", intro)
	s = s[i:]
	fence := "```" + lang + "\n"
	i = strings.Index(s, fence)
	require.GreaterOrEqual(t, i, 0)
	s = s[i+len(fence):]
	end := strings.Index(s, "```")
	require.GreaterOrEqual(t, end, 0)
	return s[:end]
}

// TestREADMEGoVerifier: the Go check the README shows merchants is, to
// the letter, the one this package's test receiver checks every delivery
// with (verify).
func TestREADMEGoVerifier(t *testing.T) {
	b, err := os.ReadFile("harness_test.go")
	require.NoError(t, err)
	src := string(b)
	i := strings.Index(src, "\nfunc verify(")
	require.GreaterOrEqual(t, i, 0)
	j := strings.Index(src[i:], "\n}\n")
	require.GreaterOrEqual(t, j, 0)
	require.Equal(t, src[i+1:i+j+3], readmeBlock(t, "In Go:", "go"))
}

// TestREADMEVerifiers runs the README's Python and shell checks of a
// signature against a body signed as deliveries are: each accepts it, and
// refuses it with another secret, another body or a time six minutes old.
func TestREADMEVerifiers(t *testing.T) {
	body := []byte(`{"id":"ev_1","type":"call.started","data":{"caller":"alice"}}` + "\n")
	now := time.Now()
	cases := map[string]struct {
		secret string
		body   []byte
		at     time.Time
		valid  bool
	}{
		"good":         {secret, body, now, true},
		"other secret": {"whsec-another-secret-0000", body, now, false},
		"other body":   {secret, []byte(`{"id":"ev_2"}`), now, false},
		"stale":        {secret, body, now.Add(-6 * time.Minute), false},
	}

	t.Run("python", func(t *testing.T) {
		py, err := exec.LookPath("python3")
		if err != nil {
			t.Skip("python3 not installed")
		}
		prog := readmeBlock(t, "In Python:", "python") + `
import os, sys
body = open(sys.argv[1], "rb").read()
print("valid" if verify(os.environ["SECRET"], os.environ["SIG"], body) else "refused")
`
		for name, c := range cases {
			got := runVerifier(t, []string{py, "-c", prog}, c.secret, Sign(secret, c.at, body), c.body)
			require.Equal(t, map[bool]string{true: "valid", false: "refused"}[c.valid], got, name)
		}
	})
	t.Run("shell", func(t *testing.T) {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Skip("openssl not installed")
		}
		prog := `cd "$(dirname "$1")"` + "\n" + readmeBlock(t, "In a shell", "sh")
		for name, c := range cases {
			got := runVerifier(t, []string{"sh", "-c", prog, "sh"}, c.secret, Sign(secret, c.at, body), c.body)
			require.Equal(t, map[bool]string{true: "valid", false: "refused"}[c.valid], got, name)
		}
	})
}

// runVerifier runs argv with the body's file (body.json) as its last
// argument, SECRET and SIG in its environment, and returns what it printed.
func runVerifier(t *testing.T, argv []string, secret, sig string, body []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "body.json")
	require.NoError(t, os.WriteFile(f, body, 0o600))
	cmd := exec.Command(argv[0], append(argv[1:], f)...)
	cmd.Env = append(os.Environ(), "SECRET="+secret, "SIG="+sig)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(string(out))
}
