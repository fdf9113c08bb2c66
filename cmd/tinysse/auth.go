package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/transport"
)

// authOptions are the access-control options.
type authOptions struct {
	secret, publicKey, jwks   string
	publishSecret, publishKey string
	audience, issuer          string
	leewayValue               durationValue // --jwt-leeway, read into leeway
	leeway                    time.Duration
	cookie                    string
	anonymous                 bool
	publicTopics              string   // --public-topics as given
	publicTopicList           []string // ... split
	adminToken, metricsToken  string
	dashboardPublic           bool

	keysGiven          bool // some JWT key is set
	adminProtectionSet bool // keys or an admin token: admin surfaces are protected
}

// addAuthFlags declares the access-control options.
func addAuthFlags(fs *pflag.FlagSet, a *authOptions) {
	a.leewayValue = durationValue(30 * time.Second)
	fs.StringVar(&a.secret, "jwt-secret", "", "check JWTs (HS256/384/512) with this `SECRET`, or @FILE to read it from FILE")
	fs.StringVar(&a.publicKey, "jwt-public-key", "", "check JWTs with the PEM public key in `FILE` (RSA: RS*/PS*, ECDSA: ES*, Ed25519: EdDSA)")
	fs.StringVar(&a.jwks, "jwks", "", "check JWTs with the keys of the JWKS in `FILE|URL` (http or https; read again for an unknown kid, at most every 30s)")
	fs.StringVar(&a.publishSecret, "jwt-publish-secret", "", "check publishers' JWTs with this `SECRET` (or @FILE) instead of the keys above")
	fs.StringVar(&a.publishKey, "jwt-publish-public-key", "", "check publishers' JWTs with the PEM public key in `FILE` instead of the keys above")
	fs.StringVar(&a.audience, "jwt-audience", "", "a JWT's aud must name this `AUDIENCE`")
	fs.StringVar(&a.issuer, "jwt-issuer", "", "a JWT's iss must be this `ISSUER`")
	fs.Var(&a.leewayValue, "jwt-leeway", "clock skew allowed on a JWT's exp and nbf")
	fs.StringVar(&a.cookie, "jwt-cookie", transport.DefaultTokenCookie, "`NAME` of the cookie a token may come in (after the Authorization header, before ?authorization=)")
	fs.BoolVar(&a.anonymous, "anonymous", false, "with JWT keys: let subscribers without a token read --public-topics")
	fs.StringVar(&a.publicTopics, "public-topics", "", "topic `PATTERNS` anonymous subscribers may read, comma-separated")
	fs.StringVar(&a.adminToken, "admin-token", "", "bearer `TOKEN` (or @FILE) with admin rights: the dashboard's feed, internal topics, admin routes")
	fs.StringVar(&a.metricsToken, "metrics-token", "", "bearer `TOKEN` (or @FILE) that /metrics asks for (unset: /metrics is open)")
	fs.BoolVar(&a.dashboardPublic, "dashboard-public", false, "serve the dashboard without admin protection on a non-loopback address")
}

// checkAuthOptions reads @FILE values and refuses combinations that
// cannot work, naming the option.
func checkAuthOptions(o *options) error {
	a := &o.auth
	a.leeway = time.Duration(a.leewayValue)
	for _, v := range []struct {
		name string
		val  *string
	}{{"jwt-secret", &a.secret}, {"jwt-publish-secret", &a.publishSecret}, {"admin-token", &a.adminToken}, {"metrics-token", &a.metricsToken}} {
		file, ok := strings.CutPrefix(*v.val, "@")
		if !ok {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("invalid value for --%s: %v", v.name, err)
		}
		if *v.val = strings.TrimRight(string(b), "\r\n"); *v.val == "" {
			return fmt.Errorf("invalid value for --%s: %s is empty", v.name, file)
		}
	}
	for _, p := range strings.Split(a.publicTopics, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, err := engine.ParsePattern(p); err != nil {
				return fmt.Errorf("invalid value for --public-topics: %q: %s", p, strings.ReplaceAll(err.Error(), "\n", ": "))
			}
			a.publicTopicList = append(a.publicTopicList, p)
		}
	}
	a.keysGiven = a.secret != "" || a.publicKey != "" || a.jwks != "" || a.publishSecret != "" || a.publishKey != ""
	a.adminProtectionSet = a.keysGiven || a.adminToken != ""
	switch {
	case (a.anonymous || a.publicTopicList != nil) && !a.keysGiven:
		return errors.New("invalid value for --anonymous/--public-topics: they need JWT keys (--jwt-secret, --jwt-public-key or --jwks); without, every topic is open")
	case a.publicTopicList != nil && !a.anonymous:
		return errors.New("invalid value for --public-topics: it is for anonymous subscribers: add --anonymous")
	case (a.publishSecret != "" || a.publishKey != "") && a.secret == "" && a.publicKey == "" && a.jwks == "" && !a.anonymous:
		return errors.New("invalid value for --jwt-publish-secret/--jwt-publish-public-key: subscribers need keys too (--jwt-secret, --jwt-public-key or --jwks), or --anonymous")
	case a.dashboardPublic && a.adminProtectionSet:
		return errors.New("invalid value for --dashboard-public: the dashboard is protected by --admin-token or the JWT keys here; drop one or the other")
	case a.dashboardPublic && o.noDashboard:
		return errors.New("invalid value for --dashboard-public: not with --no-dashboard")
	}
	if a.cookie == "" || strings.ContainsAny(a.cookie, "=;, \t") {
		return fmt.Errorf("invalid value for --jwt-cookie: %q is not a cookie name", a.cookie)
	}
	return nil
}

// newAuth builds the access control the options ask for: nil when none
// (everything open, as in Tiny SSE). Keys are read and parsed here, once.
func newAuth(o *options, log *slog.Logger) (*auth.Auth, error) {
	a := &o.auth
	if !a.adminProtectionSet {
		return nil, nil
	}
	cfg := auth.Config{
		JWKS: a.jwks, Audience: a.audience, Issuer: a.issuer, Leeway: a.leeway,
		Anonymous: a.anonymous, PublicTopics: a.publicTopicList, AdminToken: a.adminToken, Logger: log,
	}
	var err error
	if cfg.Keys, err = keysOf("jwt-secret", a.secret, "jwt-public-key", a.publicKey); err != nil {
		return nil, err
	}
	if cfg.PublishKeys, err = keysOf("jwt-publish-secret", a.publishSecret, "jwt-publish-public-key", a.publishKey); err != nil {
		return nil, err
	}
	warnShortSecrets(o, log)
	au, err := auth.New(cfg)
	if err != nil {
		if a.jwks != "" && strings.Contains(err.Error(), "JWKS") {
			return nil, fmt.Errorf("--jwks: %w", err)
		}
		return nil, err
	}
	return au, nil
}

// minSecret is the shortest HMAC secret taken without a warning: RFC 7518
// (3.2) asks for a key at least as long as the hash, 256 bits for HS256.
// Anyone who has one token can try secrets offline against its signature.
const minSecret = 32

// warnShortSecrets logs each JWT secret shorter than minSecret bytes. A
// warning, not a refusal: Tiny SSE's users may share a secret already in
// use by the service that signs their tokens.
func warnShortSecrets(o *options, log *slog.Logger) {
	for _, s := range []struct{ flag, val string }{{"jwt-secret", o.auth.secret}, {"jwt-publish-secret", o.auth.publishSecret}} {
		if s.val != "" && len(s.val) < minSecret {
			log.Warn(fmt.Sprintf("--%s is %d bytes: a secret shorter than %d bytes (256 bits) can be guessed offline from one token's signature; "+
				"use at least %d random bytes (e.g. openssl rand -base64 32)", s.flag, len(s.val), minSecret, minSecret))
		}
	}
}

// keysOf parses a secret and a PEM key file.
func keysOf(secretFlag, secret, keyFlag, keyFile string) ([]auth.Key, error) {
	var keys []auth.Key
	if secret != "" {
		k, err := auth.SecretKey([]byte(secret))
		if err != nil {
			return nil, fmt.Errorf("--%s: %v", secretFlag, err)
		}
		keys = append(keys, k)
	}
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("--%s: %v", keyFlag, err)
		}
		k, err := auth.ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("--%s: %s: %v", keyFlag, keyFile, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// exposed says whether the server listens on an address others can reach
// (anything but loopback: 0.0.0.0 and :PORT are every interface).
func exposed(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return !ok || !a.IP.IsLoopback()
}

// dashboardAllowed says whether the dashboard may be served on a server
// listening at addr, and logs how to turn it on when it may not.
func dashboardAllowed(o *options, addr net.Addr, log *slog.Logger) bool {
	a := &o.auth
	if o.noDashboard || !exposed(addr) || a.adminProtectionSet || a.dashboardPublic {
		return true
	}
	log.Warn(fmt.Sprintf("dashboard off: tinysse listens on %s, which others can reach, and nothing protects the dashboard; "+
		"set --admin-token (or JWT keys: an admin JWT) to protect it, or --dashboard-public to serve it to anyone", addr),
		"dashboard_path", o.dashboardPath)
	return false
}

// apiAllowed says whether the server API may be served on a server
// listening at addr: it needs admin protection (the admin token or JWT
// keys) unless only this machine can reach the server. Unlike the
// dashboard, nothing turns it on unprotected: it ends streams and reads
// what subscribers' hooks keep.
func apiAllowed(o *options, addr net.Addr, log *slog.Logger) bool {
	if o.apiPath == "" {
		return false
	}
	if !exposed(addr) || o.auth.adminProtectionSet {
		return true
	}
	log.Warn(fmt.Sprintf("server API off: tinysse listens on %s, which others can reach, and nothing protects the API; "+
		"set --admin-token (or JWT keys: an admin JWT) to serve it", addr), "api_path", o.apiPath)
	return false
}
