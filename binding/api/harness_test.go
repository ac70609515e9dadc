package api_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/binding/api"
)

const testToken = "s3cret-admin-token-for-tests"

// Consignee numbers the tests bind; none of their digits may appear in any
// response body or log line. They differ from the example number in the
// API's own messages (+8613800138000), which is no one's.
const (
	consignee      = "13912345678"
	otherConsignee = "15800158000"
)

// consigneeRe matches either consignee with or without +86, with the
// separators people type: the E.164 forms contain the national digits.
var consigneeRe = regexp.MustCompile(digitsRe(consignee) + "|" + digitsRe(otherConsignee))

// digitsRe matches the digits of n with up to three other characters
// between any two.
func digitsRe(n string) string {
	return strings.Join(strings.Split(n, ""), `\D{0,3}`)
}

// harness is the API on a real SQLite store behind a real HTTP server.
type harness struct {
	t     *testing.T
	store *binding.Store
	dsn   string
	srv   *httptest.Server
	token string
	doc   map[string]any
	log   *syncBuffer

	mu   sync.Mutex
	seen []string
}

// newHarness starts the API with the test token; opts may change options.
func newHarness(t *testing.T, opts ...func(*api.Options)) *harness {
	t.Helper()
	return newStoreHarness(t, nil, opts...)
}

// newStoreHarness is newHarness with options for the store, such as its
// clock.
func newStoreHarness(t *testing.T, storeOpts []binding.Option, opts ...func(*api.Options)) *harness {
	t.Helper()
	ctx := context.Background()
	dsn := filepath.Join(t.TempDir(), "vnum.db")
	store, err := binding.Open(ctx, binding.DriverSQLite, dsn, storeOpts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })

	rates, err := binding.ParseRates("0.02", "0.00018")
	require.NoError(t, err)
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	logs := &syncBuffer{}
	o := api.Options{
		Token: testToken, Rates: rates, Currency: "CNY", Location: shanghai,
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range opts {
		f(&o)
	}
	srv := httptest.NewServer(api.New(store, o))
	t.Cleanup(srv.Close)

	var doc map[string]any
	require.NoError(t, json.Unmarshal(api.OpenAPI(), &doc))
	h := &harness{t: t, store: store, dsn: dsn, srv: srv, token: o.Token, doc: doc, log: logs}
	t.Cleanup(h.scanForConsignee)
	return h
}

// scanForConsignee fails the test if any response body or log line
// carried a consignee's digits.
func (h *harness) scanForConsignee() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, body := range append(h.seen, h.log.String()) {
		if loc := consigneeRe.FindStringIndex(body); loc != nil {
			h.t.Errorf("consignee number leaked: %q in …%s…", body[loc[0]:loc[1]],
				body[max(0, loc[0]-80):min(len(body), loc[1]+80)])
		}
	}
}

// response is what the server answered.
type response struct {
	status int
	header http.Header
	body   []byte
}

// decode unmarshals the body into v.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), "body: %s", r.body)
}

// object returns the body as a JSON object.
func (r response) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	r.decode(t, &m)
	return m
}

// request describes one call; zero values mean the usual: the harness
// token, a JSON body labelled application/json.
type request struct {
	method, path string
	body         any // string or []byte sent as is; anything else as JSON
	contentType  *string
	auth         *string
	accept       string
	host         string
	rangeHdr     string // a Range header
}

func str(s string) *string { return &s }

// do sends req and checks what every answer must satisfy: JSON errors
// with an "error" field, and a status and body the OpenAPI document
// declares for the route.
func (h *harness) do(req request) response {
	h.t.Helper()
	var body io.Reader
	switch b := req.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(h.t, err)
		body = bytes.NewReader(raw)
	}
	r, err := http.NewRequest(req.method, h.srv.URL+req.path, body)
	require.NoError(h.t, err)
	if body != nil {
		ct := "application/json"
		if req.contentType != nil {
			ct = *req.contentType
		}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
	}
	switch {
	case req.auth != nil:
		if *req.auth != "" {
			r.Header.Set("Authorization", *req.auth)
		}
	case h.token != "":
		r.Header.Set("Authorization", "Bearer "+h.token)
	}
	if req.accept != "" {
		r.Header.Set("Accept", req.accept)
	}
	if req.host != "" {
		r.Host = req.host
	}
	if req.rangeHdr != "" {
		r.Header.Set("Range", req.rangeHdr)
	}
	res, err := h.srv.Client().Do(r)
	require.NoError(h.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(h.t, err)
	out := response{status: res.StatusCode, header: res.Header, body: raw}
	h.mu.Lock()
	h.seen = append(h.seen, string(raw))
	h.mu.Unlock()

	if out.status >= 400 {
		require.Equal(h.t, "application/json", res.Header.Get("Content-Type"), "error bodies are JSON: %s", raw)
		require.NotEmpty(h.t, out.object(h.t)["error"], "error body: %s", raw)
	}
	h.checkDocumented(req.method, req.path, out)
	return out
}

// checkDocumented finds the route of method and path in the OpenAPI
// document and requires that it declares the status, and that a JSON body
// matches the declared schema.
func (h *harness) checkDocumented(method, path string, r response) {
	h.t.Helper()
	p := path
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	op := h.operation(method, p)
	if op == nil {
		return // no such route: 404 or 405 from the mux
	}
	responses := op["responses"].(map[string]any)
	declared, ok := responses[fmt.Sprint(r.status)]
	require.True(h.t, ok, "%s %s answered %d, which the OpenAPI document does not declare: %s",
		method, path, r.status, r.body)
	resp := h.resolve(declared.(map[string]any))
	content, _ := resp["content"].(map[string]any)
	mt, ok := content["application/json"].(map[string]any)
	if !ok || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		return
	}
	var v any
	require.NoError(h.t, json.Unmarshal(r.body, &v))
	h.conform(mt["schema"].(map[string]any), v, method+" "+path)
}

// operation returns the document's operation for method on a concrete
// path, matching path templates segment by segment.
func (h *harness) operation(method, path string) map[string]any {
	want := strings.Split(path, "/")
	for tmpl, item := range h.doc["paths"].(map[string]any) {
		got := strings.Split(tmpl, "/")
		if len(got) != len(want) {
			continue
		}
		match := true
		for i := range got {
			if got[i] != want[i] && !(strings.HasPrefix(got[i], "{") && want[i] != "") {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		if op, ok := item.(map[string]any)[strings.ToLower(method)].(map[string]any); ok {
			return op
		}
	}
	return nil
}

// resolve follows a local $ref.
func (h *harness) resolve(node map[string]any) map[string]any {
	h.t.Helper()
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		require.True(h.t, strings.HasPrefix(ref, "#/"), "only local refs: %s", ref)
		var cur any = h.doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := cur.(map[string]any)
			require.True(h.t, ok, "bad $ref %s", ref)
			cur, ok = m[part]
			require.True(h.t, ok, "dangling $ref %s", ref)
		}
		node = cur.(map[string]any)
	}
}

// conform checks v against the subset of OpenAPI 3.0 schemas the document
// uses. Objects must have the required properties and no undocumented
// ones, so the document cannot fall behind the code.
func (h *harness) conform(schema map[string]any, v any, at string) {
	h.t.Helper()
	schema = h.resolve(schema)
	if v == nil {
		require.Equal(h.t, true, schema["nullable"], "%s: null where the schema does not allow it", at)
		return
	}
	switch schema["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		require.True(h.t, ok, "%s: want an object, got %v", at, v)
		props, _ := schema["properties"].(map[string]any)
		if req, ok := schema["required"].([]any); ok {
			for _, k := range req {
				require.Contains(h.t, obj, k, "%s: required property", at)
			}
		}
		if props == nil {
			return // a free-form object
		}
		for k, val := range obj {
			p, ok := props[k].(map[string]any)
			require.True(h.t, ok, "%s: property %q is not in the OpenAPI document", at, k)
			h.conform(p, val, at+"."+k)
		}
	case "array":
		arr, ok := v.([]any)
		require.True(h.t, ok, "%s: want an array, got %v", at, v)
		for i, item := range arr {
			h.conform(schema["items"].(map[string]any), item, fmt.Sprintf("%s[%d]", at, i))
		}
	case "string":
		s, ok := v.(string)
		require.True(h.t, ok, "%s: want a string, got %v", at, v)
		if enum, ok := schema["enum"].([]any); ok {
			require.Contains(h.t, enum, s, "%s: not in enum", at)
		}
		if pat, ok := schema["pattern"].(string); ok {
			require.Regexp(h.t, pat, s, "%s: pattern", at)
		}
		if schema["format"] == "date-time" {
			_, err := time.Parse(time.RFC3339, s)
			require.NoError(h.t, err, "%s: date-time", at)
		}
	case "integer":
		f, ok := v.(float64)
		require.True(h.t, ok && f == math.Trunc(f), "%s: want an integer, got %v", at, v)
	case "boolean":
		_, ok := v.(bool)
		require.True(h.t, ok, "%s: want a boolean, got %v", at, v)
	default:
		h.t.Fatalf("%s: schema without a type the test knows: %v", at, schema)
	}
}

// snapshot dumps every table of the store through a connection of its
// own: two equal snapshots mean nothing was written in between.
func (h *harness) snapshot() string {
	h.t.Helper()
	db, err := sql.Open("sqlite3", h.dsn)
	require.NoError(h.t, err)
	defer func() { require.NoError(h.t, db.Close()) }()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	require.NoError(h.t, err)
	var tables []string
	for rows.Next() {
		var name string
		require.NoError(h.t, rows.Scan(&name))
		tables = append(tables, name)
	}
	require.NoError(h.t, rows.Err())
	require.NoError(h.t, rows.Close())
	require.True(h.t, slices.Contains(tables, "bindings"), "tables: %v", tables)

	var sb strings.Builder
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `" ORDER BY rowid`)
		require.NoError(h.t, err)
		cols, err := rows.Columns()
		require.NoError(h.t, err)
		fmt.Fprintf(&sb, "%s %v\n", table, cols)
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(h.t, rows.Scan(ptrs...))
			fmt.Fprintf(&sb, "  %v\n", vals)
		}
		require.NoError(h.t, rows.Err())
		require.NoError(h.t, rows.Close())
	}
	return sb.String()
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
