package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
)

// Output formats of commands that print records.
const (
	formatTable = "table"
	formatCSV   = "csv"
	formatJSON  = "json"
)

// addFormatFlag adds --format to cmd and returns where its value lands.
func addFormatFlag(cmd *cobra.Command) *string {
	f := new(string)
	cmd.Flags().StringVar(f, "format", formatTable, "output `FORMAT`: table, csv or json")
	return f
}

func checkFormat(f string) error {
	switch f {
	case formatTable, formatCSV, formatJSON:
		return nil
	}
	return fmt.Errorf("%w: --format %q: want table, csv or json", errUsage, f)
}

// records is tabular output plus the value printed for --format json.
// tableHeader and tableRows, when set, are the narrower view printed for
// --format table; csv always carries the full rows.
type records struct {
	header      []string
	rows        [][]string
	tableHeader []string
	tableRows   [][]string
	json        any
}

// print writes r in the given format: an aligned table, CSV with a header
// row, or indented JSON.
func (r records) print(w io.Writer, format string) error {
	switch format {
	case formatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(r.json)
	case formatCSV:
		// Every cell is made safe for spreadsheets (binding.WriteCSV).
		return binding.WriteCSV(w, append([][]string{r.header}, r.rows...))
	default:
		header, rows := r.header, r.rows
		if r.tableHeader != nil {
			header, rows = r.tableHeader, r.tableRows
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(header, "\t")))
		for _, row := range rows {
			for i := range row {
				if row[i] == "" {
					row[i] = "-"
				}
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		return tw.Flush()
	}
}

// bindingView prints bindings without the consignee.
var bindingView = view[binding.Binding]{
	header: []string{"id", "merchant", "order", "host", "extension", "display", "dial",
		"order_status", "calls", "status", "created_at", "expires_at", "order_closed_at", "released_at"},
	cells: func(b binding.Binding) []string {
		return []string{b.ID, b.Merchant, b.Order, b.Host, b.Extension, b.Display(), b.Dial(),
			b.OrderStatus, string(b.Calls), b.Status, callrec.FormatTime(b.CreatedAt), callrec.FormatTime(b.ExpiresAt),
			callrec.FormatTime(b.OrderClosedAt), callrec.FormatTime(b.ReleasedAt)}
	},
}

// bindingRecords prints bindings without the consignee. one selects a JSON
// object instead of an array.
func bindingRecords(bs []binding.Binding, one bool) records {
	r := records{header: bindingView.header}
	for _, b := range bs {
		r.rows = append(r.rows, bindingView.cells(b))
	}
	if one && len(bs) == 1 {
		r.json = bs[0]
	} else {
		r.json = nonNil(bs)
	}
	return r
}

// cdrView prints call records: csv with the columns the admin API's CSV
// export uses too (callrec.Columns), the table with the columns an
// operator scans, narrow enough for a 120-column terminal.
var cdrView = view[callrec.Record]{
	header:      callrec.Columns(),
	cells:       callrec.Record.Row,
	tableHeader: []string{"started_at", "merchant", "host", "ext", "caller", "disposition", "talk", "min", "fee", "by"},
	tableCells: func(c callrec.Record) []string {
		return []string{callrec.FormatTime(c.StartedAt), clip(c.Merchant, 10), c.Host,
			clip(c.Extension, 8), clip(c.Caller, 14), string(c.Disposition), strconv.Itoa(c.TalkSeconds),
			strconv.Itoa(c.BilledMinutes), c.Fee.String(), string(c.HangupBy)}
	},
}

// cdrRecords prints call records held in memory (the demo's few); `vnum
// cdr list` streams them through cdrView instead.
func cdrRecords(cs []callrec.Record) records {
	r := records{header: cdrView.header, json: nonNil(cs), tableHeader: cdrView.tableHeader, tableRows: [][]string{}}
	for _, c := range cs {
		r.rows = append(r.rows, cdrView.cells(c))
		r.tableRows = append(r.tableRows, cdrView.tableCells(c))
	}
	return r
}

// clip shortens s to n runes, marking the cut with "…"; the full value is
// in the csv and json output.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// numberRecords prints the pool.
func numberRecords(ns []binding.Number) records {
	r := records{header: []string{"host", "active", "created_at"}, json: nonNil(ns)}
	for _, n := range ns {
		r.rows = append(r.rows, []string{n.Host, strconv.Itoa(n.Active), callrec.FormatTime(n.CreatedAt)})
	}
	return r
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
