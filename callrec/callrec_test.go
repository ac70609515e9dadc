package callrec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestValues pins the strings SPEC §7 names and the exports carry.
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
	require.Equal(t, []string{"vnum-1", "m1"}, r.Row()[2:4], "node, then merchant (SPEC §7's order)")
	require.Equal(t, []string{"2026-11-01T08:00:00Z", "", "2026-11-01T08:00:01Z"}, r.Row()[10:13])
	require.Equal(t, "0.02000", r.Row()[16])
	require.NotContains(t, r.Row(), "account")
}
