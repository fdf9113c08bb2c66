// Package apispec checks answers of the server API against its OpenAPI 3
// description, docs/api.yaml, with kin-openapi. Tests only: the server
// does not link it.
//
// Check finds the operation by path and method; an answer the document
// has no operation for (a 404 for an unknown endpoint, a 405) must still
// be a documented Error. The document itself is loaded and validated
// once per test binary. Safe from any goroutine.
package apispec

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

var (
	once   sync.Once
	doc    *openapi3.T
	docErr error
)

// Path is docs/api.yaml, found from this file's place in the module.
func Path() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "api.yaml")
}

// Doc returns the loaded, validated document.
func Doc(t testing.TB) *openapi3.T {
	t.Helper()
	once.Do(func() {
		loader := openapi3.NewLoader()
		doc, docErr = loader.LoadFromFile(Path())
		if docErr == nil {
			docErr = doc.Validate(context.Background())
		}
	})
	if docErr != nil {
		t.Fatalf("docs/api.yaml: %v", docErr)
	}
	return doc
}

// Check validates one answer to method on the API endpoint (the part of
// the path after --api-path, such as "topics"): its status must be one
// the operation documents, and its body (JSON) must match that
// response's schema. req is the request sent (its query is read).
func Check(t testing.TB, req *http.Request, endpoint string, status int, header http.Header, body []byte) {
	t.Helper()
	d := Doc(t)
	item := d.Paths.Find("/" + endpoint)
	var op *openapi3.Operation
	if item != nil {
		op = item.GetOperation(req.Method)
	}
	if op == nil {
		// Not an operation (an unknown endpoint, a wrong method): the
		// answer must still be a documented error.
		if status < 400 {
			t.Errorf("%s %s: status %d for something docs/api.yaml does not describe", req.Method, endpoint, status)
			return
		}
		checkError(t, d, req, endpoint, header, body)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req,
			Route:   &routers.Route{Spec: d, Path: "/" + endpoint, PathItem: item, Method: req.Method, Operation: op},
		},
		Status:  status,
		Header:  header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s: answer %d %s does not match docs/api.yaml: %v", req.Method, req.URL.RequestURI(), status, clip(body), err)
	}
	if status >= 400 {
		checkError(t, d, req, endpoint, header, body)
	}
}

// checkError requires a JSON body matching the Error schema.
func checkError(t testing.TB, d *openapi3.T, req *http.Request, endpoint string, header http.Header, body []byte) {
	t.Helper()
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: error with content type %q", req.Method, endpoint, ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s %s: error body %s is not JSON: %v", req.Method, endpoint, clip(body), err)
		return
	}
	if err := d.Components.Schemas["Error"].Value.VisitJSON(v); err != nil {
		t.Errorf("%s %s: error body %s is not an Error: %v", req.Method, endpoint, clip(body), err)
	}
}

func clip(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 300 {
		return fmt.Sprintf("%s... (%d bytes)", b[:300], len(b))
	}
	return string(b)
}
