package transport

import (
	"errors"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/valyala/fasthttp"
)

// publishContentTypes are the content types FuzzDecodePublish picks from by
// index; the last slot takes the fuzzer's own string.
var publishContentTypes = []string{
	"application/json",
	"application/x-www-form-urlencoded",
	"application/json; charset=utf-8",
	"Application/X-WWW-Form-Urlencoded ; charset=utf-8",
}

func FuzzDecodePublish(f *testing.F) {
	const js, form = 0, 1
	seeds := []struct {
		ct   uint8
		raw  string
		body string
	}{
		{js, "", `{"id":"1","event":"e","data":"hello","comment":["a","b"],"topic":"t"}`},
		{js, "", `{"data":""}`},
		{js, "", `{"comment":"one"}`},
		{js, "", `{"topic":["a","b"],"data":"x"}`},
		{js, "", `{}`},
		{js, "", `null`},
		{js, "", `[]`},
		{js, "", `"string"`},
		{js, "", ``},
		{js, "", `{"data":1}`},
		{js, "", `{"data":true}`},
		{js, "", `{"id":{"nested":"x"}}`},
		{js, "", `{"comment":[1,2]}`},
		{js, "", `{"comment":[["nested"]]}`},
		{js, "", `{"topic":{"a":1}}`},
		{js, "", `{"data":1e999999}`},
		{js, "", `{"id":123456789012345678901234567890}`},
		{js, "", `{"data":"x"} {"data":"y"}`},
		{js, "", `{"data":"x"}garbage`},
		{js, "", `{"data":"x"`},
		{js, "", `{"data":"\u0000\ud800\n"}`},
		{js, "", `{"id":"a\nb","data":"x"}`},
		{js, "", "{\"data\":\"\xff\"}"},
		{js, "", `{"DATA":"case","Id":"x"}`},
		{js, "", `{"data":null,"id":null,"comment":null}`},
		{js, "", `{"data":"a","data":"b"}`},
		{form, "", `id=1&event=e&data=hello&comment=a&comment=b&topic=t`},
		{form, "", `data=`},
		{form, "", `data`},
		{form, "", ``},
		{form, "", `data=%ZZ`},
		{form, "", `data=%00%0A&id=%0D`},
		{form, "", `data=%ff`},
		{form, "", "data=\xff"},
		{form, "", `data=a;b`},
		{form, "", `=&&=x`},
		{form, "", `data=a+b&data=c`},
		{2, "", `{"data":"x"}`},
		{3, "", `data=x`},
		{4, "text/plain", `data=x`},
		{4, "", `{"data":"x"}`},
		{4, "application/json;", `{"data":"x"}`},
		{4, "APPLICATION/JSON", `{"data":"x"}`},
		{4, "multipart/form-data; boundary=x", "--x\r\n"},
		{4, "\xff;\x00", `{}`},
	}
	for _, s := range seeds {
		f.Add(s.ct, s.raw, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct uint8, raw string, body []byte) {
		contentType := raw
		if int(ct) < len(publishContentTypes) {
			contentType = publishContentTypes[ct]
		}
		m, status, err := decodePublish([]byte(contentType), body)
		if err != nil {
			if m != nil {
				t.Fatalf("decodePublish(%q, %q) returned a message with error %v", contentType, body, err)
			}
			if status != fasthttp.StatusBadRequest && status != fasthttp.StatusUnsupportedMediaType {
				t.Fatalf("decodePublish(%q, %q) failed with status %d: %v", contentType, body, status, err)
			}
			if err.Error() == "" {
				t.Fatalf("decodePublish(%q, %q): empty error text", contentType, body)
			}
			return
		}
		if m == nil {
			t.Fatalf("decodePublish(%q, %q): nil message and no error", contentType, body)
		}
		if status != 0 {
			t.Fatalf("decodePublish(%q, %q): status %d without error", contentType, body, status)
		}
		if mt := mediaType([]byte(contentType)); mt != "application/json" && mt != "application/x-www-form-urlencoded" {
			t.Fatalf("decodePublish accepted content type %q", contentType)
		}
		if err := m.Validate(); err != nil && !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("decodePublish(%q, %q): Validate returned %v, not ErrInvalid", contentType, body, err)
		}
		if !m.HasData && m.Data != "" {
			t.Fatalf("decodePublish(%q, %q): data %q without HasData", contentType, body, m.Data)
		}
		// Whatever was accepted and validates must also encode as one frame.
		if m.Validate() == nil {
			frame := engine.AppendFrame(nil, m)
			if len(frame) < 2 || string(frame[len(frame)-2:]) != "\n\n" {
				t.Fatalf("frame %q does not end an event", frame)
			}
		}
	})
}
