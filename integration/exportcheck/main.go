// Command exportcheck reads an export of vnum's call records, as `vnum
// cdr list --format json|csv` prints it or GET /v1/cdrs answers it, from
// its standard input or from a URL; checks that it is whole (a JSON array
// that ends, a CSV file with the columns of the records), that every row
// is a record with the export's fields and that the rows come oldest
// first, each once; and prints what it found as one JSON line:
//
//	{"rows":1000000,"first":"c_0000000000000000","last":"c_00000000000f423f"}
//
// It exits 1 with the reason on the first thing that is wrong.
//
// The integration tests pipe exports of a million rows through it. It is
// a program of its own, built without the race detector, because parsing
// that much in the race-instrumented test binary would take minutes.
package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vnum/vnum/callrec"
)

// record is a record of the JSON export; decoding refuses any other field.
type record struct {
	ID            string  `json:"id"`
	CallID        string  `json:"call_id"`
	Node          string  `json:"node"`
	Merchant      string  `json:"merchant"`
	Binding       string  `json:"binding"`
	Order         string  `json:"order"`
	Host          string  `json:"host"`
	Extension     string  `json:"extension"`
	Direction     string  `json:"direction"`
	Caller        string  `json:"caller"`
	StartedAt     string  `json:"started_at"`
	RingingAt     *string `json:"ringing_at"`
	AnsweredAt    *string `json:"answered_at"`
	EndedAt       *string `json:"ended_at"`
	TalkSeconds   int     `json:"talk_seconds"`
	BilledMinutes int     `json:"billed_minutes"`
	Fee           string  `json:"fee"`
	Disposition   string  `json:"disposition"`
	HangupBy      string  `json:"hangup_by"`
	SIPStatus     int     `json:"sip_status"`
	Recorded      bool    `json:"recorded"`
}

// summary is what exportcheck prints.
type summary struct {
	Rows  int    `json:"rows"`
	First string `json:"first,omitempty"`
	Last  string `json:"last,omitempty"`
}

// order checks that rows come oldest first, by start then ID, each once.
// Exports print times to the second, and the listing orders them to the
// nanosecond: the records checked must start on whole seconds, as the
// tests write them.
type order struct {
	summary
	at time.Time
}

func (o *order) add(id, startedAt string) error {
	at, err := time.Parse(time.RFC3339, startedAt)
	if err != nil || id == "" {
		return fmt.Errorf("row %d: id %q, started_at %q", o.Rows+1, id, startedAt)
	}
	if o.Rows > 0 && (at.Before(o.at) || (at.Equal(o.at) && id <= o.Last)) {
		return fmt.Errorf("row %d (%s, %s) does not come after (%s, %s)", o.Rows+1, id, startedAt, o.Last, o.at.Format(time.RFC3339))
	}
	if o.Rows == 0 {
		o.First = id
	}
	o.Rows++
	o.Last, o.at = id, at
	return nil
}

func main() {
	format := flag.String("format", "json", "the export's format: json or csv")
	url := flag.String("url", "", "GET the export from this URL instead of reading standard input")
	flag.Parse()
	sum, err := run(*format, *url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "exportcheck:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(sum); err != nil {
		fmt.Fprintln(os.Stderr, "exportcheck:", err)
		os.Exit(1)
	}
}

func run(format, url string) (summary, error) {
	in := io.Reader(os.Stdin)
	if url != "" {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return summary{}, err
		}
		if format == "csv" {
			req.Header.Set("Accept", "text/csv")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return summary{}, err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return summary{}, fmt.Errorf("GET %s: %s", url, res.Status)
		}
		in = res.Body
	}
	r := bufio.NewReaderSize(in, 1<<20)
	switch format {
	case "json":
		return checkJSON(r)
	case "csv":
		return checkCSV(r)
	}
	return summary{}, fmt.Errorf("-format %q: want json or csv", format)
}

// checkJSON reads one JSON array of records and then the end of input.
func checkJSON(r io.Reader) (summary, error) {
	var o order
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return o.summary, fmt.Errorf("want a JSON array, got %v (%v)", tok, err)
	}
	for dec.More() {
		var rec record
		if err := dec.Decode(&rec); err != nil {
			return o.summary, fmt.Errorf("row %d: %w", o.Rows+1, err)
		}
		if err := o.add(rec.ID, rec.StartedAt); err != nil {
			return o.summary, err
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return o.summary, fmt.Errorf("after row %d: want the array's end, got %v (%v)", o.Rows, tok, err)
	}
	if tok, err := dec.Token(); !errors.Is(err, io.EOF) {
		return o.summary, fmt.Errorf("after the array: %v (%v)", tok, err)
	}
	return o.summary, nil
}

// checkCSV reads a CSV file of records with its header row.
func checkCSV(r io.Reader) (summary, error) {
	var o order
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return o.summary, fmt.Errorf("header: %w", err)
	}
	if !slices.Equal(header, callrec.Columns()) {
		return o.summary, fmt.Errorf("header %s: want %s", strings.Join(header, ","), strings.Join(callrec.Columns(), ","))
	}
	id, started := slices.Index(header, "id"), slices.Index(header, "started_at")
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return o.summary, nil
		}
		if err != nil {
			return o.summary, fmt.Errorf("row %d: %w", o.Rows+1, err)
		}
		if err := o.add(row[id], row[started]); err != nil {
			return o.summary, err
		}
	}
}
