package auth

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/internal/testjwt"
)

// TestParseJWKS: public RSA, EC and Ed25519 keys are read by kid, with
// the algorithms of their type (narrowed by "alg"); symmetric keys,
// encryption keys, keys without a kid, points off the curve and unknown
// types are left out with a warning.
func TestParseJWKS(t *testing.T) {
	pairs := testjwt.Pairs()
	good := map[string]any{}
	for kid, p := range map[string]testjwt.Pair{"rsa": pairs["RS"], "ec": pairs["ES"], "ed": pairs["EdDSA"]} {
		good[kid] = p.JWK(kid)
	}
	rsaPS := pairs["RS"].JWK("rsa-ps")
	rsaPS["alg"] = "PS256"
	offCurve := pairs["ES"].JWK("off")
	offCurve["y"] = offCurve["x"]
	wrongAlg := pairs["ES"].JWK("wrong-alg")
	wrongAlg["alg"] = "RS256"
	enc := pairs["RS"].JWK("enc")
	enc["use"] = "enc"
	noKid := pairs["EdDSA"].JWK("")
	keys := []any{good["rsa"], good["ec"], good["ed"], rsaPS, offCurve, wrongAlg, enc, noKid,
		map[string]any{"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
		map[string]any{"kty": "XYZ", "kid": "odd"}, "not an object"}
	body, _ := json.Marshal(map[string]any{"keys": keys})
	var logs bytes.Buffer
	got, err := parseJWKS(body, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"rsa": "RS256 RS384 RS512 PS256 PS384 PS512", "ec": "ES256", "ed": "EdDSA", "rsa-ps": "PS256"}
	if len(got) != len(want) {
		t.Errorf("read %d keys, want %d: %v", len(got), len(want), got)
	}
	for kid, algs := range want {
		if k, ok := got[kid]; !ok || strings.Join(k.Algs(), " ") != algs || k.ID != kid {
			t.Errorf("key %q: %+v, want algorithms %s", kid, k, algs)
		}
	}
	for _, why := range []string{"symmetric keys", "not on curve", "does not fit", `no \"kid\"`, "unsupported key type", "not a JWK"} {
		if !strings.Contains(logs.String(), why) {
			t.Errorf("no warning saying %q in:\n%s", why, logs.String())
		}
	}
	for _, bad := range []string{`{"keys":[]}`, `not json`, `{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`} {
		if _, err := parseJWKS([]byte(bad), slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("parseJWKS(%s) accepted it", bad)
		}
	}
}

// TestKeys: a secret admits HMAC only and refuses PEM text; a PEM private
// key is not a verification key.
func TestKeys(t *testing.T) {
	k, err := SecretKey([]byte("s"))
	if err != nil || !k.Admits("HS256") || k.Admits("RS256") || k.Admits("none") {
		t.Errorf("SecretKey: %+v %v", k, err)
	}
	if _, err := SecretKey(testjwt.Pairs()["RS"].PublicPEM); err == nil {
		t.Error("SecretKey took a PEM key")
	}
	if _, err := SecretKey(nil); err == nil {
		t.Error("SecretKey took an empty secret")
	}
	if _, err := ParseKey([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBx1\n-----END PRIVATE KEY-----\n")); err == nil {
		t.Error("ParseKey took a private key")
	}
	es, err := ParseKey(testjwt.Pairs()["ES"].PublicPEM)
	if err != nil || strings.Join(es.Algs(), " ") != "ES256" {
		t.Errorf("ParseKey(P-256): %+v %v", es, err)
	}
	if _, err := es.Restrict("HS256"); err == nil {
		t.Error("Restrict let an EC key admit HS256")
	}
}
