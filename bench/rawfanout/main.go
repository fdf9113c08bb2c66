// Command rawfanout is the floor that tinysse's fan-out cost is measured
// against: the least a server can do to deliver SSE over TCP.
//
// It speaks just enough of tinysse's API for the load tool to drive both
// the same way (`go run ./loadtest --target raw`): GET answers a fixed head
// and ": ok" and keeps the connection in a slice; POST /sse with a JSON
// {"id", "data"} encodes one SSE frame and writes it to every kept
// connection in a plain loop, one conn.Write each, then answers 202. No
// ring, no replay, no batching, no write timeouts: a subscriber that stops
// reading stalls every publish, which is why this is a baseline and not a
// server.
//
//	go run ./bench/rawfanout -l 127.0.0.1:1984
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
)

const streamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: ok\n\n"

func main() {
	addr := flag.String("l", "127.0.0.1:1984", "listen address (loopback only)")
	flag.Parse()
	ln, err := listen(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rawfanout: %v\n", err)
		os.Exit(2)
	}
	log.Printf("rawfanout listening on %s", ln.Addr())
	log.Fatal(newServer().serve(ln))
}

// listen refuses a non-loopback address: this is a benchmark tool.
func listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("-l %s: want a loopback IP address", addr)
	}
	return net.Listen("tcp", addr)
}

type server struct {
	mu    sync.Mutex
	conns []net.Conn // guarded by mu: the subscribers
}

func newServer() *server { return &server{} }

func (s *server) serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go s.handle(c)
	}
}

// handle reads requests on c until it becomes a stream or closes.
func (s *server) handle(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			c.Close()
			return
		}
		switch {
		case req.Method == "GET":
			// The head goes out under the lock that publishes take, after
			// the connection joined: a client that has read ": ok" gets
			// every publish after it, and no frame can precede the head.
			s.mu.Lock()
			_, err := io.WriteString(c, streamHead)
			if err == nil {
				s.conns = append(s.conns, c)
			}
			s.mu.Unlock()
			if err != nil {
				c.Close()
			}
			return // the connection now belongs to the fan-out loop
		case req.Method == "POST" && req.URL.Path == "/sse":
			status, body := s.publish(req.Body)
			_, err = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				status, http.StatusText(status), len(body), body)
		default:
			_, _ = io.Copy(io.Discard, req.Body)
			_, err = io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
		}
		if err != nil {
			c.Close()
			return
		}
	}
}

// publish is the whole fan-out: encode once, write to every subscriber.
func (s *server) publish(body io.Reader) (int, string) {
	var m struct{ ID, Data string }
	if err := json.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&m); err != nil {
		return http.StatusBadRequest, `{"error":"bad JSON"}`
	}
	frame := appendFrame(nil, m.ID, m.Data)

	s.mu.Lock()
	kept := s.conns[:0]
	for _, c := range s.conns {
		if _, err := c.Write(frame); err != nil {
			c.Close()
			continue
		}
		kept = append(kept, c)
	}
	clear(s.conns[len(kept):])
	s.conns = kept
	n := len(kept)
	s.mu.Unlock()

	return http.StatusAccepted, `{"queued":0,"subscribers":` + strconv.Itoa(n) + `}`
}

// appendFrame encodes one SSE message; data lines split on line breaks.
func appendFrame(b []byte, id, data string) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	data = strings.ReplaceAll(strings.ReplaceAll(data, "\r\n", "\n"), "\r", "\n")
	for line := range strings.SplitSeq(data, "\n") {
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}
