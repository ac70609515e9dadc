package callrec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Record is one call attempt's record (SPEC §7): signalling fills it in as
// the call goes on, the store keeps it and rates it. Times are UTC; the
// zero time is none (NULL in the store, null in JSON, "" in CSV). It never
// holds the consignee's number.
type Record struct {
	// ID identifies the record; the store fills it when empty.
	ID string
	// CallID is leg A's SIP Call-ID.
	CallID string
	// Node is the vnum node that took the call (node.id).
	Node string
	// Merchant is the binding's merchant, "" while unresolved.
	Merchant string
	// BindingID is the resolved binding, "" while unresolved.
	BindingID string
	// Order is the binding's order.
	Order string
	// Host is the dialled X.
	Host string
	// Extension is the dialled E.
	Extension string
	// Direction is to_consignee or callback.
	Direction Direction
	// Caller is the account user or the caller's number.
	Caller string
	// CallerKind says what Caller is. It decides whom a call back dials
	// and is kept by the store, but is not part of the exported forms.
	CallerKind CallerKind
	// StartedAt is when the call arrived.
	StartedAt time.Time
	// RingingAt is when leg B started ringing.
	RingingAt time.Time
	// AnsweredAt is when leg B answered.
	AnsweredAt time.Time
	// EndedAt is when the call ended; zero while it goes on.
	EndedAt time.Time
	// TalkSeconds is the answered time in whole seconds, set by the store
	// when the call ends.
	TalkSeconds int
	// BilledMinutes is TalkSeconds rounded up to minutes, set by the store.
	BilledMinutes int
	// Fee is BilledMinutes at the per-minute rate, set by the store.
	Fee Micros
	// Disposition is how the call ended (answered, busy, …).
	Disposition Disposition
	// HangupBy is caller, callee or system.
	HangupBy HangupBy
	// SIPStatus is the final SIP status of the call.
	SIPStatus int
}

// recordJSON is the exported JSON form of a Record.
type recordJSON struct {
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
}

// MarshalJSON writes the SPEC §7 field names, RFC 3339 UTC times or null,
// and the fee as a decimal string.
func (r Record) MarshalJSON() ([]byte, error) {
	return json.Marshal(recordJSON{
		ID: r.ID, CallID: r.CallID, Node: r.Node, Merchant: r.Merchant, Binding: r.BindingID, Order: r.Order,
		Host: r.Host, Extension: r.Extension, Direction: string(r.Direction), Caller: r.Caller,
		StartedAt: timePtr(r.StartedAt), RingingAt: timePtr(r.RingingAt),
		AnsweredAt: timePtr(r.AnsweredAt), EndedAt: timePtr(r.EndedAt),
		TalkSeconds: r.TalkSeconds, BilledMinutes: r.BilledMinutes, Fee: r.Fee,
		Disposition: string(r.Disposition), HangupBy: string(r.HangupBy), SIPStatus: r.SIPStatus,
	})
}

// Columns returns the column names of a record in CSV and table output,
// in order. They are the JSON field names of SPEC §7, so a CSV export and
// a JSON export of the same rows carry the same fields.
func Columns() []string {
	return []string{"id", "call_id", "node", "merchant", "binding", "order", "host", "extension",
		"direction", "caller", "started_at", "ringing_at", "answered_at", "ended_at", "talk_seconds",
		"billed_minutes", "fee", "disposition", "hangup_by", "sip_status"}
}

// Row returns r as the cells of one CSV or table row, in the order of
// Columns: times in RFC 3339 UTC ("" for none), the fee as a decimal
// string. Like every form of a record it holds no consignee number.
func (r Record) Row() []string {
	return []string{r.ID, r.CallID, r.Node, r.Merchant, r.BindingID, r.Order, r.Host, r.Extension,
		string(r.Direction), r.Caller, FormatTime(r.StartedAt), FormatTime(r.RingingAt),
		FormatTime(r.AnsweredAt), FormatTime(r.EndedAt), strconv.Itoa(r.TalkSeconds),
		strconv.Itoa(r.BilledMinutes), r.Fee.String(), string(r.Disposition), string(r.HangupBy),
		strconv.Itoa(r.SIPStatus)}
}

// FormatTime formats t as RFC 3339 in UTC to the second, or "" for the
// zero time: the form of every time vnum prints.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func timePtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := FormatTime(t)
	return &s
}

// Micros is an amount of money in micro-units (10⁻⁶ yuan). Money is never a
// float: rates and fees are exact integers.
type Micros int64

// MicrosPerUnit is the number of micro-units in one yuan.
const MicrosPerUnit = 1_000_000

// String formats m with five decimals ("0.00540", "0.02000"), or six when
// the last micro digit is not zero ("0.000181").
func (m Micros) String() string {
	sign := ""
	v := int64(m)
	if v < 0 {
		sign, v = "-", -v
	}
	s := fmt.Sprintf("%s%d.%06d", sign, v/MicrosPerUnit, v%MicrosPerUnit)
	if v%10 == 0 {
		s = s[:len(s)-1]
	}
	return s
}

// MarshalJSON writes m as a decimal string, e.g. "0.00540".
func (m Micros) MarshalJSON() ([]byte, error) {
	return []byte(`"` + m.String() + `"`), nil
}
