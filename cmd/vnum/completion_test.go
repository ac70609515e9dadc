package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCompletion: each shell's script is printed, for vnum, even with a
// configuration that would stop every other command; a missing or unknown
// shell is one line, like any group's missing or unknown subcommand.
func TestCompletion(t *testing.T) {
	t.Setenv("VNUM_BINDING_TTL", "720") // a broken configuration
	for shell, marker := range map[string]string{
		"bash": "complete -o default -F __start_vnum vnum",
		"zsh":  "#compdef vnum",
		"fish": "complete -c vnum",
	} {
		t.Run(shell, func(t *testing.T) {
			out, errOut, err := runCLI(t, "completion", shell)
			require.NoError(t, err, errOut)
			require.Empty(t, errOut)
			require.Contains(t, out, marker)
		})
	}
	requireOneLineError(t, []string{"completion"}, `"vnum completion" needs a subcommand: bash, fish, zsh`)
	requireOneLineError(t, []string{"completion", "powershell"}, `unknown command "powershell" for "vnum completion" (want bash, fish, zsh)`)
	requireOneLineError(t, []string{"completion", "bashh"}, `unknown command "bashh" for "vnum completion" (did you mean bash?)`)
	requireOneLineError(t, []string{"completion", "bash", "zsh"}, `completion bash: unknown command "zsh"`)
}

// TestBashCompletionLoads: bash accepts the script and registers it for
// vnum.
func TestBashCompletionLoads(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	out := mustRun(t, "completion", "bash")
	script := filepath.Join(t.TempDir(), "vnum.bash")
	require.NoError(t, os.WriteFile(script, []byte(out), 0o600))
	got, err := exec.Command(bash, "--norc", "-c", `source "$1" && complete -p vnum`, "bash", script).CombinedOutput()
	require.NoError(t, err, "%s", got)
	require.Equal(t, "complete -o default -F __start_vnum vnum", strings.TrimSpace(string(got)))
}
