package callrec

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestValues pins the strings README "CDRs and billing" names and the exports carry.
func TestValues(t *testing.T) {
	require.Equal(t, []Disposition{"answered", "busy", "no_answer", "cancelled", "failed",
		"invalid_extension", "expired", "rejected", "interrupted"},
		[]Disposition{DispositionAnswered, DispositionBusy, DispositionNoAnswer, DispositionCancelled,
			DispositionFailed, DispositionInvalidExtension, DispositionExpired, DispositionRejected,
			DispositionInterrupted})
	require.Equal(t, []HangupBy{"caller", "callee", "system"}, []HangupBy{HangupCaller, HangupCallee, HangupSystem})
	require.Equal(t, []Direction{"to_consignee", "callback"}, []Direction{DirectionToConsignee, DirectionCallback})
	require.Equal(t, []CallerKind{"", "account", "number", "consignee"},
		[]CallerKind{CallerUnknown, CallerAccount, CallerNumber, CallerConsignee})
}

// TestJSONAndRowAgree: the JSON form and the CSV row of a record carry the
// same fields in the same order (Columns), and neither carries the
// caller's kind, which is the store's business and not an export field.
func TestJSONAndRowAgree(t *testing.T) {
	at := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	r := Record{ID: "c_1", CallID: "x@y", Node: "vnum-1", Merchant: "m1", BindingID: "b_1", Order: "o", Host: "17000000001",
		Extension: "1234", Direction: DirectionToConsignee, Caller: "alice", CallerKind: CallerAccount,
		StartedAt: at, AnsweredAt: at.Add(time.Second), EndedAt: at.Add(time.Minute), TalkSeconds: 59,
		BilledMinutes: 1, Fee: 20000, Disposition: DispositionAnswered, HangupBy: HangupCaller, SIPStatus: 200}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.NotContains(t, string(b), "account", "no caller kind in the JSON")
	dec := json.NewDecoder(strings.NewReader(string(b)))
	_, err = dec.Token() // {
	require.NoError(t, err)
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, k.(string))
		var v any
		require.NoError(t, dec.Decode(&v))
	}
	require.Equal(t, Columns(), keys)
	require.Len(t, r.Row(), len(Columns()))
	require.Equal(t, []string{"vnum-1", "m1"}, r.Row()[2:4], "node, then merchant (the order of the README's CDR fields)")
	require.Equal(t, []string{"2026-11-01T08:00:00Z", "", "2026-11-01T08:00:01Z"}, r.Row()[10:13])
	require.Equal(t, "0.02000", r.Row()[16])
	require.NotContains(t, r.Row(), "account")
}

// referenceJSON is the JSON form of a Record as encoding/json writes it
// from a struct: what AppendJSON must write byte for byte.
type referenceJSON struct {
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
	StartedAt     *string `json:"started_at"`
	RingingAt     *string `json:"ringing_at"`
	AnsweredAt    *string `json:"answered_at"`
	EndedAt       *string `json:"ended_at"`
	TalkSeconds   int     `json:"talk_seconds"`
	BilledMinutes int     `json:"billed_minutes"`
	Fee           Micros  `json:"fee"`
	Disposition   string  `json:"disposition"`
	HangupBy      string  `json:"hangup_by"`
	SIPStatus     int     `json:"sip_status"`
	Recorded      bool    `json:"recorded"`
}

func reference(r Record) referenceJSON {
	at := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		s := FormatTime(t)
		return &s
	}
	return referenceJSON{ID: r.ID, CallID: r.CallID, Node: r.Node, Merchant: r.Merchant, Binding: r.BindingID,
		Order: r.Order, Host: r.Host, Extension: r.Extension, Direction: string(r.Direction), Caller: r.Caller,
		StartedAt: at(r.StartedAt), RingingAt: at(r.RingingAt), AnsweredAt: at(r.AnsweredAt), EndedAt: at(r.EndedAt),
		TalkSeconds: r.TalkSeconds, BilledMinutes: r.BilledMinutes, Fee: r.Fee, Disposition: string(r.Disposition),
		HangupBy: string(r.HangupBy), SIPStatus: r.SIPStatus, Recorded: r.Recorded}
}

// TestAppendJSONMatchesMarshal: the hand-built JSON of a record is what
// encoding/json writes for the same fields, for records of every kind of
// string (quotes, control characters, HTML, U+2028, invalid UTF-8, CJK),
// time (none, another zone, fractions of a second) and number.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	pieces := []string{"", "a", "alice", "=1+2*3", `"`, `\`, "\b\f\n\r\t", "\x00\x01\x1f\x7f", "<script>&amp;",
		"\u2028\u2029", "\xff\xfe", "\xe2\x82", "顺丰快递", "😀", "+8613700137000", "'", "/", "\u00e9"}
	shanghai := time.FixedZone("CST", 8*3600)
	times := []time.Time{{}, time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 1, 8, 0, 0, 999_999_999, shanghai), time.Date(1999, 12, 31, 23, 59, 59, 1, time.UTC)}
	rng := rand.New(rand.NewPCG(7, 13))
	str := func() string {
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	for i := range 2000 {
		r := Record{ID: str(), CallID: str(), Node: str(), Merchant: str(), BindingID: str(), Order: str(), Host: str(),
			Extension: str(), Direction: Direction(str()), Caller: str(), CallerKind: CallerAccount,
			StartedAt: times[rng.IntN(len(times))], RingingAt: times[rng.IntN(len(times))],
			AnsweredAt: times[rng.IntN(len(times))], EndedAt: times[rng.IntN(len(times))],
			TalkSeconds: rng.IntN(100000) - 10, BilledMinutes: rng.IntN(2000), Fee: Micros(rng.Int64N(1e9) - 1e3),
			Disposition: Disposition(str()), HangupBy: HangupBy(str()), SIPStatus: rng.IntN(700),
			Recorded: rng.IntN(2) == 1}
		want, err := json.Marshal(reference(r))
		require.NoError(t, err)
		require.Equal(t, string(want), string(r.AppendJSON([]byte("x"))[1:]), "record %d: %#v", i, r)
		got, err := json.Marshal(r)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "MarshalJSON")
	}
}
