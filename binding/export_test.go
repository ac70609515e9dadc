package binding

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/callrec"
)

// TestCDRRowMatchesJSON pins that CSV columns are the JSON field names and
// each cell is the JSON value as text, so the two exports never disagree.
func TestCDRRowMatchesJSON(t *testing.T) {
	t.Parallel()
	c := callrec.Record{ID: "c_1", CallID: "call@a", Node: "vnum-1", Merchant: "m1", BindingID: "b_1", Order: "o-1", Host: "17000000001",
		Extension: "1234", Direction: callrec.DirectionToConsignee, Caller: "alice", StartedAt: t0,
		AnsweredAt: t0.Add(3 * time.Second), EndedAt: t0.Add(64 * time.Second), TalkSeconds: 61,
		BilledMinutes: 2, Fee: 40000, Disposition: callrec.DispositionAnswered, HangupBy: callrec.HangupCallee, SIPStatus: 200}
	raw, err := json.Marshal(c)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))

	cols, row := callrec.Columns(), c.Row()
	require.Len(t, row, len(cols))
	require.Len(t, m, len(cols), "every JSON field is a column")
	for i, col := range cols {
		v, ok := m[col]
		require.True(t, ok, "column %s is a JSON field", col)
		want := ""
		switch v := v.(type) {
		case nil:
		case float64:
			want = fmt.Sprint(int(v))
		default:
			want = fmt.Sprint(v)
		}
		require.Equal(t, want, row[i], col)
	}
	require.Equal(t, "", row[slices.Index(cols, "ringing_at")], "ringing_at unset")
	require.Equal(t, "vnum-1", row[slices.Index(cols, "node")])

	// Callers cannot change the columns of the next caller.
	callrec.Columns()[0] = "x"
	require.Equal(t, "id", callrec.Columns()[0])
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	tests := map[string]struct {
		in   string
		want time.Time
		bad  bool
	}{
		"empty is unbounded": {in: "", want: time.Time{}},
		"rfc 3339 utc":       {in: "2026-11-01T00:00:00Z", want: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
		"rfc 3339 offset":    {in: "2026-11-01T08:00:00+08:00", want: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
		"date in billing tz": {in: "2026-11-01", want: time.Date(2026, 10, 31, 16, 0, 0, 0, time.UTC)},
		"date and minute":    {in: "2026-11-01T08:30", want: time.Date(2026, 11, 1, 0, 30, 0, 0, time.UTC)},
		"date, space, time":  {in: "2026-11-01 08:30", want: time.Date(2026, 11, 1, 0, 30, 0, 0, time.UTC)},
		"words":              {in: "yesterday", bad: true},
		"month only":         {in: "2026-11", bad: true},
		"no such day":        {in: "2026-02-30", bad: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseTime(tc.in, shanghai)
			if tc.bad {
				require.ErrorIs(t, err, ErrInvalid)
				return
			}
			require.NoError(t, err)
			require.True(t, tc.want.Equal(got), "got %s", got)
		})
	}
}

func TestMerchantAndNumberJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 1, 8, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	raw, err := json.Marshal(Merchant{ID: "m1", Name: "Shop One", CreatedAt: at})
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"m1","name":"Shop One","created_at":"2026-11-01T00:00:00Z"}`, string(raw))
	raw, err = json.Marshal([]Number{{Host: "17000000001", Active: 2, CreatedAt: at}})
	require.NoError(t, err)
	require.JSONEq(t, `[{"host":"17000000001","active":2,"created_at":"2026-11-01T00:00:00Z"}]`, string(raw))
	var back []Number
	require.NoError(t, json.Unmarshal(raw, &back))
	require.True(t, at.Truncate(time.Second).Equal(back[0].CreatedAt))
}

// TestWriteCSV pins the OWASP rule for every CSV vnum writes: a cell that a
// spreadsheet would evaluate begins with a single quote; others are as is.
func TestWriteCSV(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	require.NoError(t, WriteCSV(&buf, [][]string{
		{"caller", "fee"},
		{"=1+2*3", "0.02000"},
		{"+86 139", "-1"},
		{"@cmd", "\tx"},
		{"\rx", ""},
		{"a=b", "'quoted"},
		{"中文", "x,y"},
	}))
	require.Equal(t, "caller,fee\n'=1+2*3,0.02000\n'+86 139,'-1\n'@cmd,'\tx\n\"'\rx\",\na=b,'quoted\n中文,\"x,y\"\n", buf.String())
}

// TestJSONArrayWriterMatchesEncoder: an array written element by element
// is byte for byte what json.Encoder writes for the whole slice, compact
// and indented, empty or not, so streaming changed no export's form.
func TestJSONArrayWriterMatchesEncoder(t *testing.T) {
	t.Parallel()
	c := callrec.Record{ID: "c_1", CallID: "call@a", Merchant: "m1", Caller: "<b>&\"x\"", StartedAt: t0, Fee: 40000}
	for _, n := range []int{0, 1, 3} {
		for _, indent := range []string{"", "  "} {
			records := make([]callrec.Record, n)
			for i := range records {
				records[i] = c
				records[i].ID = fmt.Sprintf("c_%d", i)
			}
			var want, got strings.Builder
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", indent)
			require.NoError(t, enc.Encode(records))
			if n == 0 {
				// An empty listing is [], whatever the indent.
				want.Reset()
				want.WriteString("[]\n")
			}
			a := NewJSONArrayWriter(&got, indent)
			for _, r := range records {
				require.NoError(t, a.Write(r))
			}
			require.NoError(t, a.Close())
			require.Equal(t, want.String(), got.String(), "%d elements, indent %q", n, indent)
		}
	}

	// The quick indenter lays out what json.Indent lays out.
	for _, src := range []string{`{}`, `[]`, `{"a":[]}`, `{"a":{},"b":[1,{"c":null}],"d":"x,y:{z}[\"\\]"}`,
		`[[],[[]],{"":""}]`, `"s"`, `1`, `{"a":"\u003c\\"}`} {
		var want strings.Builder
		var b bytes.Buffer
		require.NoError(t, json.Indent(&b, []byte(src), "> ", "\t"))
		want.Write(b.Bytes())
		require.Equal(t, want.String(), string(appendIndent(nil, []byte(src), "> ", "\t")), src)
	}

	// Values without a JSON builder of their own go through encoding/json.
	for _, indent := range []string{"", "\t"} {
		vs := []any{map[string]string{"a": "<b>&"}, []int{1, 2}, "x"}
		var want, got strings.Builder
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", indent)
		require.NoError(t, enc.Encode(vs))
		a := NewJSONArrayWriter(&got, indent)
		for _, v := range vs {
			require.NoError(t, a.Write(v))
		}
		require.NoError(t, a.Close())
		require.Equal(t, want.String(), got.String(), "indent %q", indent)
	}

	// Unclosed, the array is not valid JSON: a cut listing cannot pass
	// for a whole one.
	var cut strings.Builder
	a := NewJSONArrayWriter(&cut, "")
	require.NoError(t, a.Write(c))
	require.False(t, json.Valid([]byte(cut.String())))
}
