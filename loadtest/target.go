package main

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Target is how the tool speaks to one kind of server. Everything that
// differs between servers lives here; subscribers, publishers and the
// checks know nothing else about the server they drive. The peers
// (Centrifugo, Mercure) are in peers.go.
type Target struct {
	Name string
	// DefaultURL is --url when the flag is not given.
	DefaultURL string
	// SubPath and PubPath are used when --url or --pub-url has no path.
	SubPath, PubPath string
	// AppendSubscribe appends the HTTP/1.1 request that opens one stream.
	AppendSubscribe func(dst []byte, u *url.URL) []byte
	// Ready reports whether the stream counts as subscribed, given each line
	// read after the response head until it does (comments keep their ':').
	// Nil: the 200 response head is enough. A message published after a
	// stream is ready must reach it: that is what the loss check counts.
	Ready func(line []byte) bool
	// AppendPublish appends one publish request. id and data are ASCII
	// without quotes, backslashes or line breaks.
	AppendPublish func(dst []byte, u *url.URL, id, data []byte) []byte
	// AppendBatch appends one request publishing every (ids[i],
	// datas[i]) in order (tinysse's batch publish: a JSON array); nil
	// for a target without one.
	AppendBatch func(dst []byte, u *url.URL, ids, datas [][]byte) []byte
	// Published reports whether a publish answer (its status and the first
	// maxBody bytes of its body) means published.
	Published func(status int, body []byte) bool
	// Payload takes the value of an event's first data line and returns
	// the load tool's payload inside it (see appendPayload), or isPub false
	// for a server's own events (a connect reply, a ping), which the checks
	// ignore. Nil: the value is the payload.
	Payload func(value []byte) (payload []byte, isPub bool)
}

// targets are the servers the tool can drive, by --target name.
var targets = map[string]*Target{
	"tinysse": tinysseTarget("tinysse", "http://127.0.0.1:1983/sse"),
	// raw is bench/rawfanout, the minimal fan-out loop: same wire as tinysse.
	"raw":        tinysseTarget("raw", "http://127.0.0.1:1984/sse"),
	"centrifugo": centrifugoTarget(),
	"mercure":    mercureTarget(defaultMercureKey),
}

func targetNames() string {
	return strings.Join(slices.Sorted(maps.Keys(targets)), ", ")
}

// tinysseTarget speaks tinysse's HTTP API (SPEC.md sections 2 and 3): GET
// opens a stream that starts with ": ok", POST takes JSON and answers 202.
func tinysseTarget(name, defaultURL string) *Target {
	return &Target{
		Name:       name,
		DefaultURL: defaultURL,
		SubPath:    "/sse",
		PubPath:    "/sse",
		AppendSubscribe: func(b []byte, u *url.URL) []byte {
			b = append(b, "GET "...)
			b = append(b, u.RequestURI()...)
			b = append(b, " HTTP/1.1\r\nHost: "...)
			b = append(b, u.Host...)
			return append(b, "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"...)
		},
		Ready: func(line []byte) bool { return bytes.Equal(line, []byte(": ok")) },
		AppendPublish: func(b []byte, u *url.URL, id, data []byte) []byte {
			n := len(`{"data":""}`) + len(data)
			if len(id) > 0 {
				n += len(`"id":"",`) + len(id)
			}
			b = append(appendJSONPost(b, u, n), '{')
			if len(id) > 0 {
				b = append(b, `"id":"`...)
				b = append(b, id...)
				b = append(b, `",`...)
			}
			b = append(b, `"data":"`...)
			b = append(b, data...)
			return append(b, `"}`...)
		},
		AppendBatch: func(b []byte, u *url.URL, ids, datas [][]byte) []byte {
			n := 1 // [ and ]
			for i, d := range datas {
				n += len(`{"data":""},`) + len(d)
				if len(ids[i]) > 0 {
					n += len(`"id":"",`) + len(ids[i])
				}
			}
			b = append(appendJSONPost(b, u, n), '[')
			for i, d := range datas {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, '{')
				if len(ids[i]) > 0 {
					b = append(b, `"id":"`...)
					b = append(b, ids[i]...)
					b = append(b, `",`...)
				}
				b = append(b, `"data":"`...)
				b = append(b, d...)
				b = append(b, `"}`...)
			}
			return append(b, ']')
		},
		Published: func(status int, _ []byte) bool { return status == 202 },
	}
}

// targetURL parses raw (an http:// URL) and gives it path when it has none.
func targetURL(raw, path string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%q: only http:// URLs are supported", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q: no host", raw)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "80")
	}
	if u.Path == "" {
		u.Path = path
	}
	return u, nil
}

// checkLoopback refuses a host that is not, or does not resolve only to, a
// loopback address: the tool is a load generator and must not be pointed at
// someone else's machine by accident.
func checkLoopback(u *url.URL) error {
	host := u.Hostname()
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := net.LookupIP(host)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", host, err)
		}
		ips = addrs
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s (%s) is not a loopback address; pass --allow-remote to load it anyway", host, ip)
		}
	}
	if len(ips) == 0 {
		return fmt.Errorf("%s resolves to no address", host)
	}
	return nil
}

// appendJSONPost appends the head of a POST of n bytes of JSON to u, on a
// kept-alive HTTP/1.1 connection.
func appendJSONPost(b []byte, u *url.URL, n int) []byte {
	b = append(b, "POST "...)
	b = append(b, u.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, u.Host...)
	b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "\r\n\r\n"...)
}
