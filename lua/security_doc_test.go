package lua_test

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// TestSecurityDocHook runs the publish-token script printed in SECURITY.md,
// exactly as printed: only a publish with the token is accepted, and the
// script will not start without a token.
func TestSecurityDocHook(t *testing.T) {
	doc, err := os.ReadFile("../SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```lua\n")
	src, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no lua block in SECURITY.md")
	}
	const token = "0123456789abcdef0123456789abcdef"
	ts := startServer(t, src, lua.Config{Data: token}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse")
	for _, auth := range []string{"", "Bearer ", "Bearer wrong", token, "bearer " + token, "Bearer " + token + "x"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+ts.addr+"/sse", strings.NewReader(`{"data":"forged"}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("Authorization %q: %d, want 403", auth, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+ts.addr+"/sse", strings.NewReader(`{"data":"genuine"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("with the token: %d, want 202", resp.StatusCode)
	}
	if got := s.nextData(t); got != "genuine" {
		t.Fatalf("subscriber got %q first, want only the genuine message", got)
	}

	rt, err := lua.Load(lua.Config{Source: []byte(src), Script: "publish-token.lua", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Start(); err == nil || !strings.Contains(err.Error(), "--script-data") {
		t.Errorf("started without a token (err %v), want a startup error naming --script-data", err)
	}
}
