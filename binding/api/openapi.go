package api

import _ "embed"

// openAPIDocument is the OpenAPI 3.0 description of every route in
// routes, served at GET /v1/openapi.json; TestOpenAPIDescribesRoutes keeps
// the two in step.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns a copy of the API's OpenAPI 3.0 document (JSON).
func OpenAPI() []byte { return append([]byte(nil), openAPIDocument...) }
