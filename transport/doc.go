// Package transport is tinysse's HTTP face, on fasthttp (and x/net's
// HTTP/2 server for HTTP/2 clients): POST publishes,
// GET subscribes, OPTIONS answers CORS preflights, and an optional
// directory is served as static files.
//
// A publish is decoded (JSON or form; JSON keys matched exactly and given
// once, by internal/jsonobj), passed through the Publish hook and handed
// to engine.Publish on fasthttp's worker goroutine. The body limit is
// fasthttp's, with headerReceived (body.go) between head and body: a body
// announced too large is refused before 100 Continue, and a chunked
// publish is marked so that its 413 counts as one. A subscribe runs
// the Subscribe hook, then hijacks the connection: fasthttp's worker is
// released and a goroutine of ours calls engine.Serve with the raw socket
// for the stream's life (see BENCHMARKS.md for why hijacking beats
// SetBodyStreamWriter).
//
// Every refusal is a JSON body {"error": "..."} with its status code.
// Connection limits are enforced before a request is read: the listener
// (listener.go, limits.go) answers a fast 503 beyond MaxConns and a 429
// beyond MaxConnsPerIP; subscribe answers 503 beyond MaxSubscribers before
// any hook runs.
//
// Static files (static.go) are served by fasthttp.FS reading through
// staticFS, which opens every file beneath the directory (os.OpenInRoot)
// and hides dot-names.
//
// The server API (api.go, Config.APIPath; docs/api.yaml) lists topics,
// history and subscribers from the engine's read-only views, ends streams,
// and publishes through the same handler as POST. It is guarded like an
// admin route, and answers loopback clients only without Config.Auth. One
// goroutine, from Serve to Shutdown, samples topics' publish counts for
// their rates.
//
// Beside the API: a health endpoint (Config.HealthPath), extra routes
// served by others (Config.Routes: metrics and the dashboard, package ops),
// and HTTPS on the same listener (Config.TLS; streams then fall back from
// the engine's raw writev to Write on the TLS connection). Stats counts
// what was refused, one atomic add per refusal.
//
// HTTP/2 (h2.go, dispatch.go, h2stream.go, h2guard.go): x/net's server
// takes the connections that negotiate h2 over TLS, or open with the
// client preface on a plain listener (unless Config.NoH2C); dispatch
// classifies each connection off the accept goroutine and hands the others
// to fasthttp. Each HTTP/2 request is copied into a fasthttp.RequestCtx
// whose connection is the stream, and the same handler answers it; an
// event stream is served by the engine on the stream's handler goroutine,
// through h2Stream, a connection without a raw socket to the engine.
// frameGuard bounds the floods x/net leaves open.
//
// Server's methods are safe from any goroutine.
package transport
