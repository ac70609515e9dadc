package binding

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteCSV writes rows (the header row first) as CSV, every cell made
// safe for spreadsheets (see CSVWriter).
func WriteCSV(w io.Writer, rows [][]string) error {
	cw := NewCSVWriter(w)
	for _, row := range rows {
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	return cw.Flush()
}

// CSVWriter writes CSV one row at a time, every cell made safe for
// spreadsheets: a cell that begins with =, +, -, @, a tab or a carriage
// return is prefixed with a single quote, so that a caller named "=1+2*3"
// or "=HYPERLINK(…)" is shown as text and never evaluated as a formula
// (OWASP, CSV Injection). Every CSV vnum writes goes through it. It
// buffers a few kilobytes; Flush writes them out.
type CSVWriter struct {
	cw    *csv.Writer
	cells []string
}

// NewCSVWriter returns a CSVWriter writing to w.
func NewCSVWriter(w io.Writer) *CSVWriter { return &CSVWriter{cw: csv.NewWriter(w)} }

// Write writes one row.
func (c *CSVWriter) Write(row []string) error {
	c.cells = c.cells[:0]
	for _, cell := range row {
		c.cells = append(c.cells, csvSafe(cell))
	}
	if err := c.cw.Write(c.cells); err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	return nil
}

// Flush writes the buffered rows out.
func (c *CSVWriter) Flush() error {
	c.cw.Flush()
	if err := c.cw.Error(); err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	return nil
}

// JSONArrayWriter writes a JSON array one element at a time, so that an
// array of any length is never held whole: "[", the elements separated by
// commas, and "]" at Close. An array whose writer is not closed (a
// listing cut short) lacks its "]", so no JSON parser takes it for
// complete. Elements are encoded as json.Encoder encodes them with HTML
// escaping off, like every JSON vnum writes.
type JSONArrayWriter struct {
	w      io.Writer
	indent string
	buf    bytes.Buffer
	enc    *json.Encoder
	// scratch and indented hold the JSON of one element, reused.
	scratch, indented []byte
	n                 int
}

// jsonAppender is a value that builds its own JSON (callrec.Record does,
// several times faster than encoding/json), compact and HTML-escaped, the
// bytes json.Marshal would write for it.
type jsonAppender interface{ AppendJSON(dst []byte) []byte }

// NewJSONArrayWriter returns a JSONArrayWriter writing to w. With indent
// "" the array is compact; otherwise it is laid out as json.Encoder's
// SetIndent("", indent) lays it out.
func NewJSONArrayWriter(w io.Writer, indent string) *JSONArrayWriter {
	a := &JSONArrayWriter{w: w, indent: indent}
	a.enc = json.NewEncoder(&a.buf)
	a.enc.SetEscapeHTML(false)
	a.enc.SetIndent(indent, indent)
	return a
}

// Write writes one element, v encoded as json.Marshal would encode it.
func (a *JSONArrayWriter) Write(v any) error {
	a.buf.Reset()
	if a.n == 0 {
		a.buf.WriteByte('[')
	} else {
		a.buf.WriteByte(',')
	}
	if a.indent != "" {
		a.buf.WriteString("\n" + a.indent)
	}
	if ap, ok := v.(jsonAppender); ok {
		a.scratch = ap.AppendJSON(a.scratch[:0])
		if a.indent == "" {
			a.buf.Write(a.scratch)
		} else {
			a.indented = appendIndent(a.indented[:0], a.scratch, a.indent, a.indent)
			a.buf.Write(a.indented)
		}
	} else {
		if err := a.enc.Encode(v); err != nil {
			return fmt.Errorf("json: %w", err)
		}
		a.buf.Truncate(a.buf.Len() - 1) // Encode's newline
	}
	a.n++
	_, err := a.w.Write(a.buf.Bytes())
	return err
}

// appendIndent appends src, compact JSON as json.Marshal writes it, laid
// out as json.Indent(dst, src, prefix, indent) lays it out, and returns
// dst. It does in one pass over the bytes what json.Indent does with a
// validating scanner, several times slower: the JSON comes from
// AppendJSON, valid and compact by construction.
func appendIndent(dst, src []byte, prefix, indent string) []byte {
	depth := 0
	inString, escaped := false, false
	for i, c := range src {
		if inString {
			dst = append(dst, c)
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
			dst = append(dst, c)
		case '{', '[':
			dst = append(dst, c)
			if i+1 < len(src) && (src[i+1] == '}' || src[i+1] == ']') {
				continue // an empty object or array stays on its line
			}
			depth++
			dst = appendNewline(dst, prefix, indent, depth)
		case '}', ']':
			if i > 0 && (src[i-1] == '{' || src[i-1] == '[') {
				dst = append(dst, c)
				continue
			}
			depth--
			dst = appendNewline(dst, prefix, indent, depth)
			dst = append(dst, c)
		case ',':
			dst = append(dst, c)
			dst = appendNewline(dst, prefix, indent, depth)
		case ':':
			dst = append(dst, ':', ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendNewline appends a line end, prefix and depth indents.
func appendNewline(dst []byte, prefix, indent string, depth int) []byte {
	dst = append(dst, '\n')
	dst = append(dst, prefix...)
	for range depth {
		dst = append(dst, indent...)
	}
	return dst
}

// Close ends the array and the line.
func (a *JSONArrayWriter) Close() error {
	end := "]\n"
	switch {
	case a.n == 0:
		end = "[]\n"
	case a.indent != "":
		end = "\n]\n"
	}
	_, err := io.WriteString(a.w, end)
	return err
}

// csvSafe neutralises a cell a spreadsheet would read as a formula.
func csvSafe(cell string) string {
	if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
		return "'" + cell
	}
	return cell
}

// ParseTime reads a time bound of a CDR query: RFC 3339
// ("2026-11-01T00:00:00Z"), or a date ("2026-11-01") or a date and minute
// ("2026-11-01T08:30", "2026-11-01 08:30") in loc, the billing time zone.
// The empty string is the zero time (unbounded). Anything else is
// ErrInvalid.
func ParseTime(v string, loc *time.Location) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w time %q: want RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)", ErrInvalid, v)
}
