// Command tmpl renders a Go text/template with data read as JSON from
// standard input, for the shell scripts: scripts/bench.sh fills
// testdata/sipp/uac_dtmf.xml.tmpl with it the way the integration tests
// do, so that one scenario serves both.
//
//	go run ./scripts/tmpl TEMPLATE <data.json >out
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tmpl:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: tmpl TEMPLATE <data.json")
	}
	t, err := template.New("").Option("missingkey=error").ParseFiles(os.Args[1])
	if err != nil {
		return err
	}
	var data map[string]any
	if err := json.NewDecoder(os.Stdin).Decode(&data); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	// ParseFiles names the template after the file's base name; the file
	// may define others ("keys").
	return t.Lookup(filepath.Base(os.Args[1])).Execute(os.Stdout, data)
}
