package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/binding/api"
)

// TestOpenAPIDescribesRoutes keeps the document true: it is OpenAPI 3.0,
// it has exactly the routes the server registers, every reference
// resolves, and every operation declares the errors it can answer.
func TestOpenAPIDescribesRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	doc := h.doc
	require.Regexp(t, `^3\.0\.\d+$`, doc["openapi"])
	info := doc["info"].(map[string]any)
	require.NotEmpty(t, info["title"])
	require.NotEmpty(t, info["version"])

	var documented []string
	opIDs := map[string]bool{}
	for path, item := range doc["paths"].(map[string]any) {
		for method, v := range item.(map[string]any) {
			op := v.(map[string]any)
			route := strings.ToUpper(method) + " " + path
			documented = append(documented, route)

			id, _ := op["operationId"].(string)
			require.NotEmpty(t, id, route)
			require.False(t, opIDs[id], "operationId %s twice", id)
			opIDs[id] = true
			require.NotEmpty(t, op["summary"], route)

			responses := op["responses"].(map[string]any)
			_, protected := op["security"]
			protected = !protected
			require.Equal(t, strings.HasPrefix(path, "/v1/"), protected, "%s: only /v1 needs the token", route)
			if protected {
				for _, code := range []string{"401", "403", "500"} {
					require.Contains(t, responses, code, route)
				}
			}
			if _, ok := op["requestBody"]; ok {
				for _, code := range []string{"400", "413", "415"} {
					require.Contains(t, responses, code, route)
				}
			}
			for _, part := range strings.Split(path, "/") {
				if strings.HasPrefix(part, "{") {
					require.True(t, hasPathParam(h, op, strings.Trim(part, "{}")), "%s: parameter %s", route, part)
				}
			}
		}
	}
	served := api.Routes()
	sort.Strings(served)
	sort.Strings(documented)
	require.Equal(t, served, documented, "routes served and routes documented")

	// Every $ref points at something.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["$ref"]; ok {
				h.resolve(v)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)

	// Documented schemas of request bodies refuse unknown fields, as the
	// server does.
	for name, s := range doc["components"].(map[string]any)["schemas"].(map[string]any) {
		if strings.HasSuffix(name, "Request") {
			require.Equal(t, false, s.(map[string]any)["additionalProperties"], name)
		}
	}

	// The document is served as embedded, and is valid JSON.
	r := h.do(request{method: "GET", path: "/v1/openapi.json"})
	require.Equal(t, http.StatusOK, r.status)
	require.True(t, json.Valid(r.body))
	require.JSONEq(t, string(api.OpenAPI()), string(r.body))
}

// hasPathParam reports whether op (or its refs) declares path parameter name.
func hasPathParam(h *harness, op map[string]any, name string) bool {
	params, _ := op["parameters"].([]any)
	return slices.ContainsFunc(params, func(p any) bool {
		m := h.resolve(p.(map[string]any))
		return m["in"] == "path" && m["name"] == name && m["required"] == true
	})
}

// TestConsigneeScan checks the leak detector itself.
func TestConsigneeScan(t *testing.T) {
	t.Parallel()
	for _, leak := range []string{consignee, "+8613912345678", "+86 139-1234-5678", "8615800158000", "158 0015 8000"} {
		require.Regexp(t, consigneeRe, leak)
	}
	for _, fine := range []string{"+8613800138000", "17000000001", "13912345670"} {
		require.NotRegexp(t, consigneeRe, fine)
	}
}
