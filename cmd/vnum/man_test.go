package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// TestManPages: `vnum man DIR` writes one page per command the operator
// can run (the hidden man command itself has none), each naming its
// command and saying what `vnum help` says of it, dated by
// SOURCE_DATE_EPOCH so that one commit builds the same pages.
func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1764979200") // 2025-12-06
	dir := filepath.Join(t.TempDir(), "man1")
	mustRun(t, "man", dir)

	var walk func(cmd *cobra.Command)
	pages := 0
	walk = func(cmd *cobra.Command) {
		if cmd.Hidden || cmd.Name() == "help" {
			return
		}
		name := strings.ReplaceAll(cmd.CommandPath(), " ", "-") + ".1"
		body, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, "no page for %q", cmd.CommandPath())
		page := string(body)
		require.Contains(t, page, `.TH "`+strings.ToUpper(strings.ReplaceAll(cmd.CommandPath(), " ", "-"))+`" "1" "Dec 2025"`)
		require.Contains(t, page, cmd.Short, "%s: the page says what help says", name)
		pages++
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, pages, "a page for every command, no more")
	_, err = os.Stat(filepath.Join(dir, "vnum-man.1"))
	require.ErrorIs(t, err, os.ErrNotExist, "the hidden build step has no page")
	require.GreaterOrEqual(t, pages, 20)

	// The recording's page says what an operator must know before using
	// it: the file is never overwritten, and where the recording is read.
	body, err := os.ReadFile(filepath.Join(dir, "vnum-recording-get.1"))
	require.NoError(t, err)
	require.Contains(t, string(body), "vnum recording get CDR_ID -o FILE.wav")
	require.Contains(t, string(body), "is not overwritten")
	require.Contains(t, string(body), "recording.dir")
}

// TestREADMENamesEveryCommand: every command an operator can run, which
// `vnum help` and the manual pages list, is shown in the README, as
// "binding show" or within an alternation such as "completion
// bash|zsh|fish".
func TestREADMENamesEveryCommand(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	readme := string(raw)
	var walk func(cmd *cobra.Command)
	leaves := 0
	walk = func(cmd *cobra.Command) {
		if cmd.Hidden || cmd.Name() == "help" {
			return
		}
		if cmd.HasSubCommands() {
			for _, sub := range cmd.Commands() {
				walk(sub)
			}
			return
		}
		leaves++
		path := strings.Fields(cmd.CommandPath())[1:]
		parent := strings.Join(path[:len(path)-1], " ")
		if parent != "" {
			parent += " "
		}
		re := regexp.MustCompile(`\b` + regexp.QuoteMeta(parent) + `(?:[a-z]+\|)*` + regexp.QuoteMeta(cmd.Name()) + `\b`)
		require.Regexp(t, re, readme, "the README does not show %q", cmd.CommandPath())
	}
	walk(newRootCmd())
	require.GreaterOrEqual(t, leaves, 20)
}
