package main

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/vnum/vnum/binding"
)

// view is how the rows of a listing print: the columns and cells of CSV
// (and of the table, unless it has a narrower view of its own), and for
// JSON the row's own encoding.
type view[T any] struct {
	header      []string
	cells       func(T) []string
	tableHeader []string
	tableCells  func(T) []string
}

// printRows prints rows as they are read from the store, in format (table,
// csv or json), so that a listing of any length takes the memory of a few
// rows: JSON as an indented array written element by element, CSV row by
// row, the table aligned on its first rows (see tableWriter). When the
// store fails mid-way, what was read is printed and the error returned:
// the command exits non-zero, and a JSON array is left without its "]".
func printRows[T any](w io.Writer, format string, rows *binding.Rows[T], v view[T]) (err error) {
	defer func() {
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
	}()
	out := bufio.NewWriterSize(w, 64<<10)
	var put func(T) error
	var end func() error
	switch format {
	case formatJSON:
		arr := binding.NewJSONArrayWriter(out, "  ")
		put, end = func(row T) error { return arr.Write(row) }, arr.Close
	case formatCSV:
		// Every cell is made safe for spreadsheets (binding.CSVWriter).
		cw := binding.NewCSVWriter(out)
		if err := cw.Write(v.header); err != nil {
			return err
		}
		put, end = func(row T) error { return cw.Write(v.cells(row)) }, cw.Flush
	default:
		header, cells := v.header, v.cells
		if v.tableHeader != nil {
			header, cells = v.tableHeader, v.tableCells
		}
		tw := &tableWriter{w: out}
		upper := make([]string, len(header))
		for i, h := range header {
			upper[i] = strings.ToUpper(h)
		}
		if err := tw.row(upper); err != nil {
			return err
		}
		put, end = func(row T) error { return tw.row(cells(row)) }, tw.flush
	}
	for rows.Next() {
		if err := put(rows.Row()); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		if format != formatJSON {
			err = errors.Join(err, end())
		}
		return errors.Join(err, out.Flush())
	}
	if err := end(); err != nil {
		return err
	}
	return out.Flush()
}

// tableSample is how many rows a table is measured on.
const tableSample = 1000

// tableWriter prints an aligned table of any length in bounded memory. It
// holds the first tableSample rows (the header first), sizes its columns
// to them and prints them, then prints each later row as it comes to the
// same widths; a later cell wider than its column pushes the rest of its
// row aside rather than being cut. The layout is text/tabwriter's as the
// other commands print it: columns two spaces apart, the last one
// unpadded, "-" for an empty cell.
type tableWriter struct {
	w      io.Writer
	held   [][]string
	widths []int
	sized  bool
	line   strings.Builder
}

// row adds one row of cells.
func (t *tableWriter) row(cells []string) error {
	for i := range cells {
		if cells[i] == "" {
			cells[i] = "-"
		}
	}
	if t.sized {
		return t.print(cells)
	}
	t.held = append(t.held, cells)
	if len(t.held) < tableSample {
		return nil
	}
	return t.flush()
}

// flush sizes the columns, when not done yet, and prints the rows held.
func (t *tableWriter) flush() error {
	if !t.sized {
		for _, cells := range t.held {
			for i, c := range cells {
				if i == len(t.widths) {
					t.widths = append(t.widths, 0)
				}
				t.widths[i] = max(t.widths[i], utf8.RuneCountInString(c))
			}
		}
		t.sized = true
	}
	for _, cells := range t.held {
		if err := t.print(cells); err != nil {
			return err
		}
	}
	t.held = nil
	return nil
}

// print writes one row to the column widths.
func (t *tableWriter) print(cells []string) error {
	t.line.Reset()
	for i, c := range cells {
		t.line.WriteString(c)
		if i == len(cells)-1 {
			break
		}
		width := 0
		if i < len(t.widths) {
			width = t.widths[i]
		}
		t.line.WriteString(strings.Repeat(" ", max(width-utf8.RuneCountInString(c), 0)+2))
	}
	t.line.WriteByte('\n')
	_, err := io.WriteString(t.w, t.line.String())
	return err
}
