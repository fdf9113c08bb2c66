package lua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["http"] = openHTTP }

const (
	// httpMaxBody is the largest response body http reads: bodies are
	// buffered whole into a Lua string.
	httpMaxBody = 16 << 20
	// httpTimeout bounds a whole request (connect, send, read the body)
	// unless the agent or the request says otherwise. The script timeout
	// (Config.Timeout) also stops a request that outlives it.
	httpTimeout = 30 * time.Second
)

// httpMethods are the shortcuts http.get(url, opts) ... and agent:get(url,
// opts) ...
var httpMethods = []string{"get", "head", "options", "post", "put", "patch", "delete"}

// httpAgent is a client with its own connection pool and default headers.
type httpAgent struct {
	client  *http.Client
	headers http.Header   // defaults; a request's own headers win
	timeout time.Duration // of a request that sets none
}

func newHTTPAgent(timeout time.Duration) *httpAgent {
	tr, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		tr = tr.Clone()
	} else { // replaced by the program: start from the usual settings
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true,
			TLSHandshakeTimeout: 10 * time.Second, ExpectContinueTimeout: time.Second}
	}
	tr.MaxIdleConnsPerHost = 16
	tr.IdleConnTimeout = 60 * time.Second
	return &httpAgent{client: &http.Client{Transport: tr}, headers: http.Header{}, timeout: timeout}
}

// http: request(method, url, opts) -> {status=, headers=, body=};
// get/head/options/post/put/patch/delete(url, opts); agent{headers=,
// timeout_ms=} -> a client with :request(method, url, opts) and :get ...
// :delete(url, opts), which reuse its connections and add its headers.
//
// opts: args (name -> value or list, added to the URL's query string;
// "query" is accepted as another name for it, as in Tiny SSE's code),
// headers (name -> value or list), body (a string), timeout_ms (or
// timeout, in milliseconds; default the agent's, 30s). The response's
// headers have lower-case names, repeated ones joined by ", ". The request
// runs with the VM unlocked, so only the calling hook waits. A network error, a timeout or a body over
// 16 MiB is a Lua error (use pcall); an HTTP error status is not.
//
// The package's functions share one agent per VM with no default headers.
func openHTTP(v *vm, L *glua.LState) glua.LValue {
	shared := newHTTPAgent(httpTimeout)
	v.closers = append(v.closers, shared.client.CloseIdleConnections)
	t := L.CreateTable(0, len(httpMethods)+2)
	t.RawSetString("request", L.NewFunction(func(L *glua.LState) int {
		return shared.do(v, L, L.CheckString(1), 2)
	}))
	for _, name := range httpMethods {
		method := strings.ToUpper(name)
		t.RawSetString(name, L.NewFunction(func(L *glua.LState) int {
			return shared.do(v, L, method, 1)
		}))
	}

	agentMT := L.CreateTable(0, 3)
	methods := L.CreateTable(0, len(httpMethods)+1)
	checkAgent := func(L *glua.LState) *httpAgent {
		ud, ok := L.Get(1).(*glua.LUserData)
		if !ok {
			L.ArgError(1, "agent expected (call agent:get(url), with a colon)")
		}
		a, ok := ud.Value.(*httpAgent)
		if !ok {
			L.ArgError(1, "agent expected")
		}
		return a
	}
	methods.RawSetString("request", L.NewFunction(func(L *glua.LState) int {
		return checkAgent(L).do(v, L, L.CheckString(2), 3)
	}))
	for _, name := range httpMethods {
		method := strings.ToUpper(name)
		methods.RawSetString(name, L.NewFunction(func(L *glua.LState) int {
			return checkAgent(L).do(v, L, method, 2)
		}))
	}
	agentMT.RawSetString("__index", methods)
	agentMT.RawSetString("__name", glua.LString("http.agent"))
	t.RawSetString("agent", L.NewFunction(func(L *glua.LState) int {
		opts := L.OptTable(1, nil)
		timeout := httpTimeout
		var headers http.Header
		if opts != nil {
			d, err := optTimeout(L, opts)
			if err != nil {
				L.ArgError(1, err.Error())
			}
			if d > 0 {
				timeout = d
			}
			if headers, err = readHeaders(L.GetField(opts, "headers")); err != nil {
				L.ArgError(1, err.Error())
			}
		}
		a := newHTTPAgent(timeout)
		v.closers = append(v.closers, a.client.CloseIdleConnections)
		if headers != nil {
			a.headers = headers
		}
		return pushUserData(L, a, agentMT)
	}))
	return t
}

// do sends method to the URL at stack index n with the options at n+1,
// and pushes the response table.
func (a *httpAgent) do(v *vm, L *glua.LState, method string, n int) int {
	rawURL := L.CheckString(n)
	opts := L.OptTable(n+1, nil)
	req, timeout, err := a.newRequest(L, method, rawURL, opts)
	if err != nil {
		L.RaiseError("http: %v", err)
	}
	if timeout <= 0 {
		timeout = a.timeout
	}
	// The hook's context is cancelled when the script timeout stops it.
	ctx := L.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	var (
		resp *http.Response
		body []byte
	)
	b := v.budget(L, "http")
	maxBody := min(httpMaxBody, b.max)
	if b.deadline != 0 { // the hook's deadline, without waiting for the watchdog
		timeout = min(timeout, time.Duration(b.deadline-time.Now().UnixNano())+time.Millisecond)
	}
	v.wait(func() {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err = a.client.Do(req.WithContext(ctx))
		if err != nil {
			return
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(io.LimitReader(resp.Body, int64(maxBody)+1))
		if err == nil && len(body) > maxBody {
			err = fmt.Errorf("response body larger than %d bytes", maxBody)
		}
	})
	if err != nil {
		b.poll() // past the hook's deadline: stopped, as the watchdog would
		switch {
		case ctx.Err() != nil:
			err = errors.New("stopped by the script timeout")
		case errors.Is(err, context.DeadlineExceeded):
			err = fmt.Errorf("no answer within %s", timeout)
		default:
			err = unwrapURLError(err)
		}
		L.RaiseError("http: %s %s: %v", method, req.URL.Redacted(), err)
	}
	headers := L.CreateTable(0, len(resp.Header))
	for name, vals := range resp.Header {
		headers.RawSetString(strings.ToLower(name), glua.LString(strings.Join(vals, ", ")))
	}
	t := L.CreateTable(0, 3)
	t.RawSetString("status", glua.LNumber(resp.StatusCode))
	t.RawSetString("headers", headers)
	t.RawSetString("body", glua.LString(body))
	L.Push(t)
	return 1
}

// unwrapURLError drops the method and URL that *url.Error repeats.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newRequest builds the request from the URL and opts (VM locked: it
// reads Lua tables), and returns the request's own timeout, if any.
func (a *httpAgent) newRequest(L *glua.LState, method, rawURL string, opts *glua.LTable) (*http.Request, time.Duration, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, 0, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, 0, fmt.Errorf("url %q: the scheme must be http or https", rawURL)
	}
	var (
		body    io.Reader
		headers http.Header
		timeout time.Duration
	)
	if opts != nil {
		args := L.GetField(opts, "args")
		if args == glua.LNil {
			args = L.GetField(opts, "query")
		}
		switch x := args.(type) {
		case *glua.LNilType:
		case *glua.LTable:
			q, err := quoteTable(x)
			if err != nil {
				return nil, 0, fmt.Errorf("args: %w", err)
			}
			u.RawQuery = joinQuery(u.RawQuery, q)
		default:
			return nil, 0, fmt.Errorf("args must be a table, not %s", args.Type())
		}
		switch x := L.GetField(opts, "body").(type) {
		case *glua.LNilType:
		case glua.LString:
			body = strings.NewReader(string(x))
		case glua.LNumber:
			body = strings.NewReader(x.String())
		default:
			return nil, 0, fmt.Errorf("body must be a string, not %s", x.Type())
		}
		if headers, err = readHeaders(L.GetField(opts, "headers")); err != nil {
			return nil, 0, err
		}
		if timeout, err = optTimeout(L, opts); err != nil {
			return nil, 0, err
		}
	}
	req, err := http.NewRequest(strings.ToUpper(method), u.String(), body)
	if err != nil {
		return nil, 0, unwrapURLError(err)
	}
	for name, vals := range a.headers {
		req.Header[name] = vals
	}
	for name, vals := range headers {
		req.Header[name] = vals
	}
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
		req.Header.Del("Host")
	}
	return req, timeout, nil
}

// readHeaders reads name -> value or list of values.
func readHeaders(v glua.LValue) (http.Header, error) {
	t, ok := v.(*glua.LTable)
	if !ok {
		if v == glua.LNil {
			return nil, nil
		}
		return nil, fmt.Errorf("headers must be a table, not %s", v.Type())
	}
	h := http.Header{}
	var err error
	t.ForEach(func(k, val glua.LValue) {
		if err != nil {
			return
		}
		name, ok := k.(glua.LString)
		if !ok {
			err = fmt.Errorf("header names are strings, not %s", k.Type())
			return
		}
		key := http.CanonicalHeaderKey(string(name))
		if list, ok := val.(*glua.LTable); ok {
			for i := 1; i <= list.Len() && err == nil; i++ {
				var s string
				if s, err = queryValue(list.RawGetInt(i)); err == nil {
					h[key] = append(h[key], s)
				}
			}
		} else {
			var s string
			if s, err = queryValue(val); err == nil {
				h[key] = append(h[key], s)
			}
		}
		if err != nil {
			err = fmt.Errorf("header %s: %w", name, err)
		}
	})
	return h, err
}

// optTimeout reads timeout_ms (or Tiny SSE's timeout), in milliseconds; 0
// when absent.
func optTimeout(L *glua.LState, opts *glua.LTable) (time.Duration, error) {
	v := L.GetField(opts, "timeout_ms")
	if v == glua.LNil {
		v = L.GetField(opts, "timeout")
	}
	switch x := v.(type) {
	case *glua.LNilType:
		return 0, nil
	case glua.LNumber:
		if x <= 0 || math.IsNaN(float64(x)) || float64(x) > float64(math.MaxInt64/int64(time.Millisecond)) {
			return 0, fmt.Errorf("timeout_ms must be a positive number of milliseconds, not %v", x)
		}
		return time.Duration(float64(x) * float64(time.Millisecond)), nil
	}
	return 0, fmt.Errorf("timeout_ms must be a number, not %s", v.Type())
}
