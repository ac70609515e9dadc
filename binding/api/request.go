package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/vnum/vnum/binding"
)

// decodeBody reads r's body, at most MaxBodyBytes, as one JSON object into
// v; fields v does not have are refused. An empty body is allowed only
// when optional, and leaves v as it is. A body must be labelled
// application/json: that also keeps browsers from posting forms or text to
// a loopback API without a CORS preflight.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return badRequest("request body: " + err.Error())
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if optional {
			return nil
		}
		return badRequest("request body: want a JSON object")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &httpError{status: http.StatusUnsupportedMediaType,
			msg: "request body: want Content-Type: application/json"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: " + jsonProblem(err))
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		return badRequest("request body: want exactly one JSON object")
	}
	return nil
}

// jsonProblem says what is wrong with a body in the client's terms (JSON
// field names and types), not Go's.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end"
	case errors.As(err, &typ):
		if typ.Field == "" {
			return "want a JSON object"
		}
		return fmt.Sprintf("field %q: want %s, got %s", typ.Field, jsonType(typ.Type), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "malformed JSON"
}

// jsonType names a Go type as the JSON type that decodes into it.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonType(t.Elem()), "a "), "an ") + "s"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a number"
}

// checkQuery refuses query parameters other than allowed: a mistyped
// filter must not silently widen a listing to everything.
func checkQuery(r *http.Request, allowed ...string) error {
	for k := range r.URL.Query() {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return badRequest(fmt.Sprintf("unknown query parameter %q: this endpoint takes none", k))
			}
			return badRequest(fmt.Sprintf("unknown query parameter %q: want %s", k, strings.Join(allowed, ", ")))
		}
	}
	return nil
}

// parseTTL reads an optional lifetime such as "720h" or "90m" and checks
// its range, quoting it as the client wrote it (binding.ParseTTL).
func parseTTL(s string) (time.Duration, error) { return binding.ParseTTL(s) }

// wantsCSV reports whether the Accept header prefers text/csv to JSON
// (RFC 9110 §12.5.1, by q-value; JSON wins ties and is the default).
func wantsCSV(accept string) bool {
	csvQ, jsonQ := -1.0, -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if _, err := fmt.Sscanf(v, "%g", &q); err != nil {
				continue
			}
		}
		switch mt {
		case "text/csv":
			csvQ = max(csvQ, q)
		case "application/json":
			jsonQ = max(jsonQ, q)
		}
	}
	return csvQ > 0 && csvQ > jsonQ
}
