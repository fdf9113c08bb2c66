package auth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tinysse/tinysse/engine"
)

// Claim is the name of the token claim that lists what its holder may do:
//
//	"tinysse": {"publish": ["news/*"], "subscribe": ["*"], "admin": false}
const Claim = "tinysse"

// DefaultJWKSInterval is how often, at most, a JWKS is read again for a
// token whose kid it does not hold.
const DefaultJWKSInterval = 30 * time.Second

// Config configures an Auth. The zero value of every field is its
// documented default; a Config with no key and no AdminToken is refused
// (leave the transport's Auth nil instead: everything is open).
type Config struct {
	// Keys verify subscribers' tokens, and publishers' unless PublishKeys
	// is set. Made with SecretKey or ParseKey.
	Keys []Key
	// JWKS is a JSON Web Key Set, a file or an http(s) URL, whose keys join
	// Keys. It is read by New (a failure is New's error) and again when a
	// token names a kid it does not hold, at most once per JWKSInterval
	// (default DefaultJWKSInterval); a failed read keeps the keys it had.
	JWKS         string
	JWKSInterval time.Duration
	// PublishKeys, when set, are the only keys that verify publishers'
	// tokens (Keys and JWKS then verify subscribers' only).
	PublishKeys []Key
	// Audience and Issuer, when set, must be the token's aud (one of them)
	// and iss.
	Audience string
	Issuer   string
	// Leeway is the clock skew allowed on exp and nbf. Default 0 (the
	// command line's default is 30s).
	Leeway time.Duration
	// Anonymous lets subscribers in without a token (with one, it must be
	// valid); they may read PublicTopics only. Publishing always needs a
	// token.
	Anonymous bool
	// PublicTopics are the topic patterns anonymous subscribers may read.
	PublicTopics []string
	// AdminToken, when set, is a bearer token with every right: internal
	// topics (the dashboard's feed), admin routes, any topic. A token
	// whose claim says "admin": true has the same rights.
	AdminToken string
	// HTTPClient reads a JWKS URL. Default: a plain client;
	// JWKSTimeout bounds each read (default 5s).
	HTTPClient  *http.Client
	JWKSTimeout time.Duration
	// Logger receives JWKS reads and failures. Default slog.Default().
	Logger *slog.Logger
}

// Auth decides what a request's token lets it do. Safe from any goroutine.
type Auth struct {
	cfg        Config
	subKeys    []Key // Keys, then nothing: JWKS keys are looked up in jwks
	pubKeys    []Key // PublishKeys, or Keys when none
	pubJWKS    bool  // publishers' tokens may use the JWKS too
	jwks       *jwks // nil without Config.JWKS
	opts       []jwt.ParserOption
	public     []engine.Pattern
	anonymous  *Grant
	open       *Grant // no JWT keys: every non-internal topic
	admin      *Grant
	adminToken []byte
	jwtEnabled bool
}

// Op is what a request asks to do.
type Op int

const (
	Subscribe Op = iota // read topics
	Publish             // publish to topics
	Admin               // an admin route (the dashboard's data, an admin API)
)

// New checks cfg and reads the JWKS, if any.
func New(cfg Config) (*Auth, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: leeway must not be negative")
	}
	if len(cfg.Keys) == 0 && cfg.JWKS == "" && len(cfg.PublishKeys) == 0 && cfg.AdminToken == "" {
		return nil, errors.New("auth: no key and no admin token")
	}
	if len(cfg.PublishKeys) > 0 && len(cfg.Keys) == 0 && cfg.JWKS == "" && !cfg.Anonymous {
		return nil, errors.New("auth: publish keys alone verify no subscriber: give subscribers' keys too, or let them in anonymously")
	}
	if (cfg.Anonymous || len(cfg.PublicTopics) > 0) && len(cfg.Keys) == 0 && cfg.JWKS == "" && len(cfg.PublishKeys) == 0 {
		return nil, errors.New("auth: anonymous subscribers and public topics need JWT keys (without them every topic is open)")
	}
	if len(cfg.PublicTopics) > 0 && !cfg.Anonymous {
		return nil, errors.New("auth: public topics are for anonymous subscribers: allow them too")
	}
	a := &Auth{cfg: cfg, subKeys: cfg.Keys, pubKeys: cfg.PublishKeys}
	if len(a.pubKeys) == 0 {
		a.pubKeys, a.pubJWKS = cfg.Keys, true
	}
	a.jwtEnabled = len(cfg.Keys) > 0 || cfg.JWKS != "" || len(cfg.PublishKeys) > 0
	for _, p := range cfg.PublicTopics {
		pat, err := engine.ParsePattern(p)
		if err != nil {
			return nil, fmt.Errorf("auth: public topic %q: %s", p, strings.ReplaceAll(err.Error(), "\n", ": "))
		}
		a.public = append(a.public, pat)
	}
	a.anonymous = &Grant{Anonymous: true, subscribe: a.public}
	a.open = &Grant{open: true}
	a.admin = &Grant{Admin: true}
	if cfg.AdminToken != "" {
		a.adminToken = []byte(cfg.AdminToken)
	}
	a.opts = []jwt.ParserOption{jwt.WithLeeway(cfg.Leeway)}
	if cfg.Audience != "" {
		a.opts = append(a.opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		a.opts = append(a.opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.JWKS != "" {
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{}
		}
		timeout := cfg.JWKSTimeout
		if timeout <= 0 {
			timeout = 5 * time.Second
		}
		interval := cfg.JWKSInterval
		if interval <= 0 {
			interval = DefaultJWKSInterval
		}
		a.jwks = &jwks{src: cfg.JWKS, client: client, timeout: timeout, interval: interval, log: cfg.Logger}
		if err := a.jwks.load(); err != nil {
			return nil, fmt.Errorf("auth: JWKS %s: %w", cfg.JWKS, err)
		}
	}
	return a, nil
}

// JWT says whether tokens are checked (some key is set). Without, only the
// admin token matters: every other topic is open.
func (a *Auth) JWT() bool { return a.jwtEnabled }

// Grant is what one request's token lets it do, found once per request.
type Grant struct {
	// Admin: every right, internal topics and admin routes included.
	Admin bool
	// Anonymous: no token; the public topics only.
	Anonymous bool
	// Expires is when the token stops being accepted (its exp plus the
	// leeway); zero when it has no exp (or there is no token).
	Expires time.Time
	// Claims are the token's verified claims; nil without a JWT.
	Claims map[string]any

	open      bool // no JWT keys: every topic but internal ones
	publish   []engine.Pattern
	subscribe []engine.Pattern
}

// Error is a refused request: Status is 401 (no token, or a bad one) or
// 403 (a good token that does not allow it).
type Error struct {
	Status int
	Code   string // the WWW-Authenticate error: invalid_token, insufficient_scope
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Challenge is the WWW-Authenticate header of the refusal.
func (e *Error) Challenge() string {
	return `Bearer realm="tinysse", error="` + e.Code + `", error_description="` + strings.ReplaceAll(e.Msg, `"`, `'`) + `"`
}

func unauthorized(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Msg: msg}
}

func forbidden(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "insufficient_scope", Msg: msg}
}

// Verify finds what token ("" when the request has none) lets a request
// do for op. The token is parsed and its signature checked once here;
// Grant.Allows then costs a pattern match per topic.
func (a *Auth) Verify(token string, op Op) (*Grant, *Error) {
	if token != "" && a.adminToken != nil && subtle.ConstantTimeCompare([]byte(token), a.adminToken) == 1 {
		return a.admin, nil
	}
	if !a.jwtEnabled {
		if op == Admin {
			return nil, a.needAdmin(token)
		}
		return a.open, nil // a token meant for a script, or none: not ours to judge
	}
	if token == "" {
		if op == Subscribe && a.cfg.Anonymous {
			return a.anonymous, nil
		}
		return nil, unauthorized("a token is required")
	}
	claims, err := a.parse(token, op)
	if err != nil {
		return nil, unauthorized("invalid token: " + Reason(err))
	}
	g, err := grantOf(claims)
	if err != nil {
		return nil, unauthorized("invalid token: " + err.Error())
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		g.Expires = exp.Add(a.cfg.Leeway)
	}
	if op == Admin && !g.Admin {
		return nil, forbidden("the token has no admin rights")
	}
	return g, nil
}

// needAdmin is the refusal of an admin route to a token that is not the
// admin token.
func (a *Auth) needAdmin(token string) *Error {
	if token == "" {
		return unauthorized("an admin token is required")
	}
	return forbidden("the token has no admin rights")
}

// parse verifies token with the keys of op.
func (a *Auth) parse(token string, op Op) (jwt.MapClaims, error) {
	if op == Admin {
		claims, err := verify(token, a.keysFor(a.subKeys, a.jwks), a.opts)
		if err != nil && a.cfg.PublishKeys != nil {
			if c, perr := verify(token, a.keysFor(a.cfg.PublishKeys, nil), a.opts); perr == nil {
				return c, nil
			}
		}
		return claims, err
	}
	if op == Publish {
		j := a.jwks
		if !a.pubJWKS {
			j = nil
		}
		return verify(token, a.keysFor(a.pubKeys, j), a.opts)
	}
	return verify(token, a.keysFor(a.subKeys, a.jwks), a.opts)
}

// keysFor returns the function that picks the keys a token may be
// verified with: by its kid from the JWKS (read again for a kid it does
// not hold), else every key of keys and of the JWKS that admits its alg.
func (a *Auth) keysFor(keys []Key, set *jwks) func(alg, kid string) ([]Key, error) {
	return func(alg, kid string) ([]Key, error) {
		var out []Key
		for _, k := range keys {
			if k.Admits(alg) {
				out = append(out, k)
			}
		}
		switch {
		case set != nil && kid != "":
			k, err := set.keyID(kid) // an unknown kid reads the set again, at most once per interval
			switch {
			case err != nil && len(out) == 0:
				return nil, err
			case err != nil: // a key given by flag may still verify it
			case k.Admits(alg):
				out = append(out, k)
			case len(out) == 0:
				return nil, &AlgError{Alg: alg, Allowed: k.algs}
			}
		case set != nil:
			for _, k := range set.all() {
				if k.Admits(alg) {
					out = append(out, k)
				}
			}
		}
		if len(out) == 0 {
			return nil, &AlgError{Alg: alg, Allowed: a.algs(keys, set)}
		}
		return out, nil
	}
}

// algs lists the algorithms keys and set admit.
func (a *Auth) algs(keys []Key, set *jwks) []string {
	var out []string
	add := func(k Key) {
		for _, alg := range k.algs {
			if !slices.Contains(out, alg) {
				out = append(out, alg)
			}
		}
	}
	for _, k := range keys {
		add(k)
	}
	if set != nil {
		for _, k := range set.all() {
			add(k)
		}
	}
	slices.Sort(out)
	return out
}

// grantOf reads the tinysse claim.
func grantOf(claims jwt.MapClaims) (*Grant, error) {
	g := &Grant{Claims: claims}
	raw, ok := claims[Claim]
	if !ok {
		return g, nil // a valid token that allows nothing
	}
	c, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the %q claim must be an object", Claim)
	}
	var err error
	if g.publish, err = patterns(c, "publish"); err != nil {
		return nil, err
	}
	if g.subscribe, err = patterns(c, "subscribe"); err != nil {
		return nil, err
	}
	if v, ok := c["admin"]; ok {
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("%s.admin must be true or false", Claim)
		}
		g.Admin = b
	}
	return g, nil
}

func patterns(c map[string]any, name string) ([]engine.Pattern, error) {
	v, ok := c[name]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s.%s must be a list of topic patterns", Claim, name)
	}
	out := make([]engine.Pattern, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("%s.%s must be a list of topic patterns", Claim, name)
		}
		p, err := engine.ParsePattern(s)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %q: %s", Claim, name, s, strings.ReplaceAll(err.Error(), "\n", ": "))
		}
		out = append(out, p)
	}
	return out, nil
}

// Allows says whether g may do op on every one of topics (none: the
// default stream ""). It returns the first topic it may not. Internal
// topics (engine.InternalPrefix) need admin rights: no pattern covers
// them, not even one that names them.
func (g *Grant) Allows(op Op, topics []string) (string, bool) {
	if g.Admin {
		return "", true
	}
	if len(topics) == 0 {
		return "", g.allows(op, "")
	}
	for _, t := range topics {
		if !g.allows(op, t) {
			return t, false
		}
	}
	return "", true
}

func (g *Grant) allows(op Op, topic string) bool {
	if strings.HasPrefix(topic, engine.InternalPrefix) {
		return false
	}
	if g.open {
		return true
	}
	pats := g.subscribe
	if op == Publish {
		pats = g.publish
	}
	if op == Subscribe && engine.IsPattern(topic) {
		// A pattern subscription: allowed only if every topic it could
		// match is, i.e. one of the grant's patterns covers it.
		q, err := engine.ParsePattern(topic)
		if err != nil {
			return false
		}
		for _, p := range pats {
			if p.Covers(q) {
				return true
			}
		}
		return false
	}
	for _, p := range pats {
		if p.Match(topic) {
			return true
		}
	}
	return false
}

// Refuse is the refusal of g for op on topic (one Allows returned): 401
// when there is no token (an anonymous subscriber, or no JWT keys and no
// admin token given), 403 when the token does not cover it.
func (g *Grant) Refuse(op Op, topic string) *Error {
	name := fmt.Sprintf("%q", topic)
	if topic == "" {
		name = "the default stream"
	}
	verb := "subscribe to"
	if op == Publish {
		verb = "publish to"
	}
	if strings.HasPrefix(topic, engine.InternalPrefix) {
		if g.Anonymous || g.open {
			return unauthorized(fmt.Sprintf("%s is an internal topic: an admin token is required", name))
		}
		return forbidden(fmt.Sprintf("%s is an internal topic: the token has no admin rights", name))
	}
	if g.Anonymous {
		return unauthorized(fmt.Sprintf("%s is not a public topic: a token is required", name))
	}
	return forbidden(fmt.Sprintf("the token does not allow to %s %s", verb, name))
}
