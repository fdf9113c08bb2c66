package auth_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/internal/testjwt"
)

// TestAllowsPatterns: a pattern subscription is allowed only when one of
// the grant's subscribe patterns covers every topic it could match; a
// publish to a topic with a "*" in its name is matched as a topic.
func TestAllowsPatterns(t *testing.T) {
	key, err := auth.SecretKey([]byte("a secret for the pattern test"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{Keys: []auth.Key{key}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tok := testjwt.HS256(t, "a secret for the pattern test", testjwt.Claims(time.Hour, testjwt.Topics([]string{"sports/*"}, []string{"sports/**", "news/*"})))
	g, aerr := a.Verify(tok, auth.Subscribe)
	if aerr != nil {
		t.Fatal(aerr)
	}
	for _, ok := range []string{"sports/a", "sports/*", "sports/**", "sports/*/live", "news/*", "news/a"} {
		if _, allowed := g.Allows(auth.Subscribe, []string{ok}); !allowed {
			t.Errorf("subscribe %q refused", ok)
		}
	}
	for _, no := range []string{"*", "**", "news/**", "*/a", "sportsx/*", "news/*/x", "a*"} {
		if first, allowed := g.Allows(auth.Subscribe, []string{"sports/a", no}); allowed || first != no {
			t.Errorf("subscribe %q: allowed %v, first refused %q", no, allowed, first)
		}
	}
	// Publishing names topics: "sports/*" as a topic name is one segment "*".
	if _, allowed := g.Allows(auth.Publish, []string{"sports/*"}); !allowed {
		t.Errorf("publish to the topic named sports/* refused")
	}
	if _, allowed := g.Allows(auth.Publish, []string{"sports/**"}); !allowed {
		t.Errorf("publish to the topic named sports/** refused (a one-segment name under sports/)")
	}
}
