package callrec

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Record is one call attempt's record (README "CDRs and billing"): signalling fills it in as
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
	// Recorded says the call has a recording (README "Recordings"): its
	// file was begun at the bridge. The record never says where it is.
	Recorded bool
}

// MarshalJSON writes the export's field names (Columns), RFC 3339 UTC
// times or null, and the fee as a decimal string (see AppendJSON).
func (r Record) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// AppendJSON appends r's JSON form to dst and returns it: an object of
// the fields of Columns, in that order, with times in RFC 3339 UTC or
// null and the fee as a decimal string. The bytes are those json.Marshal
// would write for the same fields (HTML characters escaped as \u003c and
// so on); they are built without reflection, because exports write
// millions of records and encoding/json spent most of their time.
func (r Record) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, r.ID)
	dst = append(dst, `,"call_id":`...)
	dst = appendJSONString(dst, r.CallID)
	dst = append(dst, `,"node":`...)
	dst = appendJSONString(dst, r.Node)
	dst = append(dst, `,"merchant":`...)
	dst = appendJSONString(dst, r.Merchant)
	dst = append(dst, `,"binding":`...)
	dst = appendJSONString(dst, r.BindingID)
	dst = append(dst, `,"order":`...)
	dst = appendJSONString(dst, r.Order)
	dst = append(dst, `,"host":`...)
	dst = appendJSONString(dst, r.Host)
	dst = append(dst, `,"extension":`...)
	dst = appendJSONString(dst, r.Extension)
	dst = append(dst, `,"direction":`...)
	dst = appendJSONString(dst, string(r.Direction))
	dst = append(dst, `,"caller":`...)
	dst = appendJSONString(dst, r.Caller)
	dst = append(dst, `,"started_at":`...)
	dst = appendJSONTime(dst, r.StartedAt)
	dst = append(dst, `,"ringing_at":`...)
	dst = appendJSONTime(dst, r.RingingAt)
	dst = append(dst, `,"answered_at":`...)
	dst = appendJSONTime(dst, r.AnsweredAt)
	dst = append(dst, `,"ended_at":`...)
	dst = appendJSONTime(dst, r.EndedAt)
	dst = append(dst, `,"talk_seconds":`...)
	dst = strconv.AppendInt(dst, int64(r.TalkSeconds), 10)
	dst = append(dst, `,"billed_minutes":`...)
	dst = strconv.AppendInt(dst, int64(r.BilledMinutes), 10)
	dst = append(dst, `,"fee":"`...)
	dst = append(dst, r.Fee.String()...)
	dst = append(dst, `","disposition":`...)
	dst = appendJSONString(dst, string(r.Disposition))
	dst = append(dst, `,"hangup_by":`...)
	dst = appendJSONString(dst, string(r.HangupBy))
	dst = append(dst, `,"sip_status":`...)
	dst = strconv.AppendInt(dst, int64(r.SIPStatus), 10)
	dst = append(dst, `,"recorded":`...)
	dst = strconv.AppendBool(dst, r.Recorded)
	return append(dst, '}')
}

// appendJSONTime appends t as a JSON string in RFC 3339 UTC to the second
// (FormatTime), or null for the zero time.
func appendJSONTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339)
	return append(dst, '"')
}

// appendJSONString appends s as a JSON string, escaped as json.Marshal
// escapes it: quote, backslash and control characters; <, > and & as
// \u003c, \u003e, \u0026 so that the JSON is safe inside HTML; U+2028 and
// U+2029, which JavaScript reads as line ends; and each byte of invalid
// UTF-8 as \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Columns returns the column names of a record in CSV and table output,
// in order. They are the JSON field names of README "CDRs and billing", so a CSV export and
// a JSON export of the same rows carry the same fields.
func Columns() []string {
	return []string{"id", "call_id", "node", "merchant", "binding", "order", "host", "extension",
		"direction", "caller", "started_at", "ringing_at", "answered_at", "ended_at", "talk_seconds",
		"billed_minutes", "fee", "disposition", "hangup_by", "sip_status", "recorded"}
}

// Row returns r as the cells of one CSV or table row, in the order of
// Columns: times in RFC 3339 UTC ("" for none), the fee as a decimal
// string. Like every form of a record it holds no consignee number.
func (r Record) Row() []string {
	return []string{r.ID, r.CallID, r.Node, r.Merchant, r.BindingID, r.Order, r.Host, r.Extension,
		string(r.Direction), r.Caller, FormatTime(r.StartedAt), FormatTime(r.RingingAt),
		FormatTime(r.AnsweredAt), FormatTime(r.EndedAt), strconv.Itoa(r.TalkSeconds),
		strconv.Itoa(r.BilledMinutes), r.Fee.String(), string(r.Disposition), string(r.HangupBy),
		strconv.Itoa(r.SIPStatus), strconv.FormatBool(r.Recorded)}
}

// FormatTime formats t as RFC 3339 in UTC to the second, or "" for the
// zero time: the form of every time vnum prints.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
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

// RecordingFile returns the name of the file, in recording.dir, that
// holds the recording of the call whose record is id: id.wav. Signalling
// writes it and the admin API and CLI read it by the same name. ok is
// false for an id that could name another file (empty, with a path
// separator or a leading dot): no record has one.
func RecordingFile(id string) (name string, ok bool) {
	if id == "" || id[0] == '.' || strings.ContainsAny(id, `/\`+"\x00") {
		return "", false
	}
	return id + ".wav", true
}
