package apispec_test

import (
	"testing"

	"github.com/tinysse/tinysse/internal/apispec"
)

// TestDocValid: docs/api.yaml loads and is a valid OpenAPI 3 document.
func TestDocValid(t *testing.T) { apispec.Doc(t) }
