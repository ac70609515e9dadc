package main

import (
	"io"

	"github.com/spf13/cobra"
)

// newCompletionCmd is `vnum completion bash|zsh|fish`: the shell's
// completion script on stdout. Each shell is a subcommand, so that
// `vnum completion` alone or an unknown shell is refused like any other
// group's missing or unknown subcommand.
func newCompletionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "completion",
		Short: "Print the shell completion script (bash, zsh or fish)",
		Long: `Print the shell completion script for bash, zsh or fish on stdout.

bash (needs the bash-completion package):
  vnum completion bash | sudo tee /etc/bash_completion.d/vnum >/dev/null
or for one user, in ~/.bashrc:
  source <(vnum completion bash)

zsh (compinit must be enabled):
  vnum completion zsh > "${fpath[1]}/_vnum"

fish:
  vnum completion fish > ~/.config/fish/completions/vnum.fish`,
		// The script does not depend on the configuration: it is printed
		// even where none is valid yet.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
	}
	shell := func(name string, gen func(root *cobra.Command, w io.Writer) error) *cobra.Command {
		return &cobra.Command{
			Use:   name,
			Short: "Print the " + name + " completion script",
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return gen(c.Root(), c.OutOrStdout())
			},
		}
	}
	cmd.AddCommand(
		shell("bash", func(root *cobra.Command, w io.Writer) error { return root.GenBashCompletionV2(w, true) }),
		shell("zsh", func(root *cobra.Command, w io.Writer) error { return root.GenZshCompletion(w) }),
		shell("fish", func(root *cobra.Command, w io.Writer) error { return root.GenFishCompletion(w, true) }),
	)
	return cmd
}
