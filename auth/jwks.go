package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of a JWKS read: a key set is a few keys, not a way to make the
// server read without end.
const (
	jwksMaxBytes = 1 << 20
	jwksMaxKeys  = 256
)

// jwks is a JSON Web Key Set read from a file or an http(s) URL. It is
// read once by New, then again when a token names a kid it does not hold,
// at most once per interval; a failed read keeps the keys it had.
//
// keys is swapped whole after each successful read, so the hot path (a
// known kid) reads it without a lock. mu guards last, inflight and
// lastErr; nothing else is taken while it is held, and it is never held
// across the read itself (a slow server would hold up every other
// unknown kid behind the lock rather than behind the read they wait for).
type jwks struct {
	src      string
	client   *http.Client
	timeout  time.Duration
	interval time.Duration
	log      *slog.Logger

	keys atomic.Pointer[map[string]Key] // by kid; the map is never changed once stored

	mu       sync.Mutex
	last     time.Time     // when the last read began
	inflight chan struct{} // closed when the read in progress ends; nil if none
	lastErr  error         // the last read's failure; nil after a success
}

// keyID returns the key with kid, reading the set again if it has none
// (at most once per interval; a read in progress is waited for).
func (j *jwks) keyID(kid string) (Key, error) {
	if k, ok := (*j.keys.Load())[kid]; ok {
		return k, nil
	}
	j.mu.Lock()
	if k, ok := (*j.keys.Load())[kid]; ok { // a read just brought it
		j.mu.Unlock()
		return k, nil
	}
	if ch := j.inflight; ch != nil {
		j.mu.Unlock()
		<-ch // bounded by the read's own timeout
		if k, ok := (*j.keys.Load())[kid]; ok {
			return k, nil
		}
		return Key{}, &KeyIDError{KID: kid, Why: j.why()}
	}
	if since := time.Since(j.last); since < j.interval {
		err := &KeyIDError{KID: kid, Why: fmt.Sprintf("the key set was read %s ago; next read in %s", since.Round(time.Second), (j.interval - since).Round(time.Second))}
		if j.lastErr != nil {
			err.Why = "the key set could not be read: " + j.lastErr.Error()
		}
		j.mu.Unlock()
		return Key{}, err
	}
	ch := make(chan struct{})
	j.inflight, j.last = ch, time.Now()
	j.mu.Unlock()

	keys, err := j.read()
	j.mu.Lock()
	if err == nil {
		j.keys.Store(&keys)
	} else {
		j.log.Warn("jwks: reading the key set failed; keeping the keys read before", "jwks", j.src, "keys", len(*j.keys.Load()), "err", err)
	}
	j.lastErr, j.inflight = err, nil
	j.mu.Unlock()
	close(ch)
	if k, ok := keys[kid]; ok {
		j.log.Info("jwks: read the key set again for a new key id", "jwks", j.src, "kid", kid, "keys", len(keys))
		return k, nil
	}
	return Key{}, &KeyIDError{KID: kid, Why: j.why()}
}

// why says why a kid is still unknown after a read.
func (j *jwks) why() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.lastErr != nil {
		return "the key set could not be read: " + j.lastErr.Error()
	}
	return "not in the key set"
}

// all returns every key of the set (tokens without a kid try them all).
func (j *jwks) all() map[string]Key { return *j.keys.Load() }

// load reads the set for the first time; an error stops the server's start.
func (j *jwks) load() error {
	j.last = time.Now()
	keys, err := j.read()
	if err != nil {
		return err
	}
	j.keys.Store(&keys)
	return nil
}

// read fetches and parses the set.
func (j *jwks) read() (map[string]Key, error) {
	var body []byte
	var err error
	if strings.HasPrefix(j.src, "http://") || strings.HasPrefix(j.src, "https://") {
		body, err = j.fetch()
	} else {
		body, err = readFileMax(j.src, jwksMaxBytes)
	}
	if err != nil {
		return nil, err
	}
	return parseJWKS(body, j.log)
}

func (j *jwks) fetch() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.src, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", j.src, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > jwksMaxBytes {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", j.src, jwksMaxBytes)
	}
	return body, nil
}

func readFileMax(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// jwk is one key of a set (RFC 7517, 7518, 8037): the members we read.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads a set's public keys by kid. Keys for encryption, keys
// without a kid and symmetric ("oct") keys are left out, with a warning:
// a JWKS is public, and a secret in it would let anyone sign. A set with
// no usable key is an error.
func parseJWKS(body []byte, log *slog.Logger) (map[string]Key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JWK set: %v", err)
	}
	if len(set.Keys) > jwksMaxKeys {
		return nil, fmt.Errorf("%d keys in the set, more than %d", len(set.Keys), jwksMaxKeys)
	}
	keys := make(map[string]Key, len(set.Keys))
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			log.Warn("jwks: a key is not a JWK; left out", "index", i, "err", err)
			continue
		}
		if k.Use == "enc" {
			continue
		}
		key, err := k.key()
		if err == nil && k.Kid == "" {
			err = errors.New(`no "kid"`)
		}
		if err == nil {
			if _, dup := keys[k.Kid]; dup {
				err = errors.New("a key with this kid came earlier")
			}
		}
		if err != nil {
			log.Warn("jwks: key left out", "index", i, "kid", k.Kid, "err", err)
			continue
		}
		key.ID = k.Kid
		keys[k.Kid] = key
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable key in the set (public RSA, EC or Ed25519 keys with a kid)")
	}
	return keys, nil
}

// key builds the public key a JWK describes.
func (k jwk) key() (Key, error) {
	var pub any
	switch k.Kty {
	case "RSA":
		n, err := b64(k.N, "n")
		if err != nil {
			return Key{}, err
		}
		e, err := b64(k.E, "e")
		if err != nil {
			return Key{}, err
		}
		if len(e) == 0 || len(e) > 4 {
			return Key{}, errors.New(`bad "e"`)
		}
		exp := new(big.Int).SetBytes(e)
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return Key{}, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := b64(k.X, "x")
		if err != nil {
			return Key{}, err
		}
		y, err := b64(k.Y, "y")
		if err != nil {
			return Key{}, err
		}
		if len(x) != size || len(y) != size {
			return Key{}, fmt.Errorf(`"x" and "y" must be %d bytes for %s`, size, k.Crv)
		}
		point := append(append([]byte{4}, x...), y...)
		if pub, err = ecdsa.ParseUncompressedPublicKey(curve, point); err != nil {
			return Key{}, err
		}
	case "OKP":
		if k.Crv != "Ed25519" {
			return Key{}, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err := b64(k.X, "x")
		if err != nil {
			return Key{}, err
		}
		if len(x) != ed25519.PublicKeySize {
			return Key{}, errors.New(`"x" must be 32 bytes`)
		}
		pub = ed25519.PublicKey(x)
	case "oct":
		return Key{}, errors.New("symmetric keys do not belong in a public key set")
	default:
		return Key{}, fmt.Errorf("unsupported key type %q", k.Kty)
	}
	key, err := publicKey(pub)
	if err != nil {
		return Key{}, err
	}
	if k.Alg != "" {
		return key.Restrict(k.Alg)
	}
	return key, nil
}

func b64(s, name string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%q is not base64url", name)
	}
	return b, nil
}
