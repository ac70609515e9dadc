package sip

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
)

// longDigits matches what may be a phone number: seven digits or more.
var longDigits = regexp.MustCompile(`\+?\d{7,}`)

// maskNumbers hides phone numbers in text for logs at info level and above.
func maskNumbers(s string) string {
	return longDigits.ReplaceAllString(s, "[number]")
}

// numberMasker wraps the handler sipgo logs through: sipgo puts whole
// request lines, messages and errors quoting them into its records, and
// B's number must not reach logs at info level or above (README "Bindings"). Debug
// records pass untouched, for the engineer who asks for them.
type numberMasker struct {
	slog.Handler
}

func (h numberMasker) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelInfo {
		return h.Handler.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, maskNumbers(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func maskAttr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		return slog.String(a.Key, maskNumbers(a.Value.String()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, maskNumbers(err.Error()))
		}
		return slog.String(a.Key, maskNumbers(a.Value.String()))
	case slog.KindGroup:
		attrs := a.Value.Group()
		masked := make([]any, 0, len(attrs))
		for _, g := range attrs {
			masked = append(masked, maskAttr(g))
		}
		return slog.Group(a.Key, masked...)
	}
	return a
}

func (h numberMasker) WithAttrs(attrs []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		masked[i] = maskAttr(a)
	}
	return numberMasker{h.Handler.WithAttrs(masked)}
}

func (h numberMasker) WithGroup(name string) slog.Handler {
	return numberMasker{h.Handler.WithGroup(name)}
}

// maxLogValue bounds what vnum logs of a value taken from a message.
const maxLogValue = 96

// logValue is a value from a message as a log line carries it: cut to
// maxLogValue bytes, valid UTF-8 (slog's handlers escape the rest).
func logValue(s string) string {
	if len(s) > maxLogValue {
		s = strings.ToValidUTF8(s[:maxLogValue], "") + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// aCallID is leg A's Call-ID as the call's log lines carry it. A carrier
// may build its Call-IDs from the calling number, and on a callback that
// number is the consignee's: there anything that may be a phone number is
// masked. Other calls' callers may be logged (their CDR names them too).
func aCallID(callID string, callback bool) string {
	if callback {
		return maskNumbers(logValue(callID))
	}
	return logValue(callID)
}
