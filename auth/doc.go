// Package auth is tinysse's built-in access control: JSON Web Tokens for
// publishers and subscribers, and the admin token.
//
// In: the token of a request (the transport finds it in the Authorization
// header, a cookie or the ?authorization= parameter) and what the request
// asks (Subscribe, Publish, Admin). Out: a Grant (what the token allows,
// its claims, when it expires) or an Error (401 or 403, with the
// WWW-Authenticate challenge). The transport refuses; this package only
// decides.
//
// A token is verified once per request, with keys parsed once: secrets
// and PEM keys by New's caller (SecretKey, ParseKey), a JWKS by New and
// again, at most once per DefaultJWKSInterval, when a token names a kid it lacks.
// The algorithms a key admits follow its type only, so "none" and an HMAC
// signature made with a public key's bytes are refused. The "tinysse"
// claim lists topic patterns (engine.Pattern) for "publish" and
// "subscribe"; Grant.Allows then costs one pattern match per topic.
//
// Lua's jwt package verifies with the same code (Verify, ParseKey, Reason).
//
// Auth, Grant and Key are safe from any goroutine once built; Verify may
// block on a JWKS read (bounded by Config.JWKSTimeout) for a kid it lacks.
package auth
