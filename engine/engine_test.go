package engine_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
)

// wait bounds every read and wait in these tests: long enough for a noisy
// 2-core machine under -race, short enough that a hang fails fast.
const wait = 5 * time.Second

// newEngine starts an engine that is closed when the test ends.
func newEngine(t testing.TB, cfg engine.Config) *engine.Engine {
	t.Helper()
	eng, err := engine.New(cfg)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := eng.Close(ctx); err != nil && !errors.Is(err, engine.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return eng
}

// listen returns a loopback listener closed when the test ends.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// rawConnOf is the socket's RawConn, as the transport passes it.
func rawConnOf(c net.Conn) syscall.RawConn {
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		panic(err)
	}
	return raw
}

// stream is the client side of one subscriber served by eng.Serve over a
// loopback TCP connection.
type stream struct {
	t      testing.TB
	sub    *engine.Subscriber
	conn   net.Conn // client side
	server net.Conn
	br     *bufio.Reader
	done   chan error // Serve's result
}

type serveOpt func(*engine.Stream, net.Conn)

func withLastEventID(id string) serveOpt {
	return func(st *engine.Stream, _ net.Conn) { st.LastEventID, st.HasLastEventID = id, true }
}

// noRaw serves without a RawConn: every write takes the subscriber
// goroutine's blocking path (as for TLS).
func noRaw(st *engine.Stream, _ net.Conn) { st.Raw = nil }

func withHead(h string) serveOpt {
	return func(st *engine.Stream, _ net.Conn) { st.Head = []byte(h) }
}

// serve connects a client to ln and runs eng.Serve(sub) on the accepted
// socket in a goroutine.
func serve(t testing.TB, eng *engine.Engine, ln net.Listener, sub *engine.Subscriber, opts ...serveOpt) *stream {
	t.Helper()
	client, server := testserver.Pair(t, ln)
	st := engine.Stream{Conn: server, Raw: rawConnOf(server), Close: server.Close}
	for _, o := range opts {
		o(&st, server)
	}
	s := &stream{t: t, sub: sub, conn: client, server: server, br: bufio.NewReader(client), done: make(chan error, 1)}
	go func() { s.done <- eng.Serve(sub, st) }()
	t.Cleanup(func() {
		client.Close()
		select {
		case <-s.done:
		case <-time.After(wait):
			t.Errorf("Serve did not return after the client closed")
		}
	})
	return s
}

// next reads one frame: lines up to and including a blank line.
func (s *stream) next() (string, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(wait))
	var b strings.Builder
	for {
		line, err := s.br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\n" {
			return b.String(), nil
		}
	}
}

// expect reads len(frames) frames and compares them exactly.
func (s *stream) expect(frames ...string) {
	s.t.Helper()
	for i, want := range frames {
		got, err := s.next()
		if err != nil || got != want {
			s.t.Fatalf("frame %d: got %q (err %v), want %q", i, got, err, want)
		}
	}
}

// expectEOF checks that the server closed the stream with nothing more.
func (s *stream) expectEOF() {
	s.t.Helper()
	got, err := s.next()
	if got != "" || !errors.Is(err, io.EOF) && !isReset(err) {
		s.t.Fatalf("want the stream closed, got %q (err %v)", got, err)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// served waits for Serve to return.
// leave closes the client's side and returns once Serve has returned and
// topic counts no subscriber.
func (s *stream) leave(eng *engine.Engine, topic string) {
	s.t.Helper()
	s.conn.Close()
	s.served()
	waitSubscribers(s.t, eng, topic, 0)
}

func (s *stream) served() error {
	s.t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(wait):
		s.t.Fatalf("Serve did not return")
		return nil
	}
}

// waitFor polls cond until it holds or wait passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, wait, what, cond)
}

// ready returns s once it is served: ": ok" read and eng counting n
// subscribers on topic.
func ready(t testing.TB, eng *engine.Engine, s *stream, topic string, n int) *stream {
	t.Helper()
	s.expect(okFrame)
	waitSubscribers(t, eng, topic, n)
	return s
}

func waitSubscribers(t testing.TB, eng *engine.Engine, topic string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d subscribers on %q", n, topic), func() bool { return eng.Subscribers(topic) == n })
}

func publish(t testing.TB, eng *engine.Engine, m *engine.Message) engine.PublishResult {
	t.Helper()
	res, err := eng.Publish(m)
	if err != nil {
		t.Fatalf("Publish(%+v): %v", m, err)
	}
	return res
}

func msg(id, data string, topics ...string) *engine.Message {
	return &engine.Message{ID: id, Data: data, HasData: true, Topics: topics}
}

func frame(id, data string) string { return "id: " + id + "\ndata: " + data + "\n\n" }

const okFrame = ": ok\n\n"

// unsubscribes counts Unsubscribe calls per subscriber.
type unsubscribes struct {
	total atomic.Int64
	mu    sync.Mutex
	per   map[uint64]int
}

func (u *unsubscribes) hook(s *engine.Subscriber) {
	u.total.Add(1)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.per == nil {
		u.per = make(map[uint64]int)
	}
	u.per[s.ID]++
}

// check asserts that each of subs was unsubscribed exactly once and nobody
// else was.
func (u *unsubscribes) check(t testing.TB, subs ...*engine.Subscriber) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range subs {
		if n := u.per[s.ID]; n != 1 {
			t.Errorf("subscriber %d: Unsubscribe ran %d times, want 1", s.ID, n)
		}
	}
	if n := u.total.Load(); n != int64(len(subs)) {
		t.Errorf("Unsubscribe ran %d times in all, want %d", n, len(subs))
	}
}

// gate is a Message hook that holds up its shard on the message with ID
// "gate" until released, so that the test can pile messages up behind it.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) hook(_ any, m *engine.Message, _ *engine.Subscriber) []byte {
	if m.ID == "gate" {
		g.once.Do(func() {
			close(g.entered)
			<-g.release
		})
	}
	return m.Frame
}

func (g *gate) wait(t testing.TB) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(wait):
		t.Fatal("the shard never reached the gate")
	}
}

func TestEngineDeliverOne(t *testing.T) {
	for _, raw := range []bool{true, false} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) {
			eng := newEngine(t, engine.Config{})
			ln := listen(t)
			var opts []serveOpt
			if !raw {
				opts = append(opts, noRaw)
			}
			s := serve(t, eng, ln, &engine.Subscriber{}, append(opts, withHead("HEAD\r\n\r\n"))...)
			for _, want := range []string{"HEAD\r\n", "\r\n"} {
				if line, err := s.br.ReadString('\n'); err != nil || line != want {
					t.Fatalf("head line %q, %v; want %q", line, err, want)
				}
			}
			s.expect(okFrame)
			for i := range 100 {
				publish(t, eng, msg(strconv.Itoa(i), "message "+strconv.Itoa(i)))
			}
			for i := range 100 {
				s.expect(frame(strconv.Itoa(i), "message "+strconv.Itoa(i)))
			}
			// A message published to another topic does not arrive.
			publish(t, eng, msg("other", "x", "elsewhere"))
			publish(t, eng, &engine.Message{Event: "e", Data: "a\nb", HasData: true, Comments: []string{"c"}})
			s.expect("event: e\ndata: a\ndata: b\n: c\n\n")
		})
	}
}

func TestEngineDeliverMany(t *testing.T) {
	const subs, msgs = 200, 50
	eng := newEngine(t, engine.Config{Shards: 4})
	ln := listen(t)
	streams := make([]*stream, subs)
	for i := range streams {
		streams[i] = serve(t, eng, ln, &engine.Subscriber{})
	}
	for _, s := range streams {
		s.expect(okFrame)
	}
	waitSubscribers(t, eng, "", subs)
	errs := make(chan error, subs)
	for i, s := range streams {
		go func() {
			for j := range msgs {
				want := frame(strconv.Itoa(j), strings.Repeat("x", j))
				if got, err := s.next(); err != nil || got != want {
					errs <- fmt.Errorf("subscriber %d, message %d: got %q (%v), want %q", i, j, got, err, want)
					return
				}
			}
			errs <- nil
		}()
	}
	for j := range msgs {
		res := publish(t, eng, msg(strconv.Itoa(j), strings.Repeat("x", j)))
		if res.Subscribers != subs {
			t.Errorf("publish %d: Subscribers %d, want %d", j, res.Subscribers, subs)
		}
	}
	for range subs {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestEngineMultiTopic(t *testing.T) {
	deliveredOnceInOrder(t, []string{"a", "b"}, []*engine.Message{
		msg("1", "a only", "a"),
		msg("2", "both", "a", "b"),
		msg("3", "b only", "b"),
		msg("4", "both reversed", "b", "a"),
		msg("5", "not ours", "c"),
		msg("6", "c and b", "c", "b"),
		msg("7", "a again", "a"),
		msg("8", "default topic"),
	}, frame("1", "a only"), frame("2", "both"), frame("3", "b only"), frame("4", "both reversed"),
		frame("6", "c and b"), frame("7", "a again"))
}

// deliveredOnceInOrder serves one subscriber on topics (a topic or a
// pattern each), publishes pubs, and expects exactly want: delivered live
// one by one, and all at once from a backlog (held up behind a gate
// published to topics[0]), the same messages, once each, in publish order.
func deliveredOnceInOrder(t *testing.T, topics []string, pubs []*engine.Message, want ...string) {
	t.Helper()
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			g := newGate()
			eng := newEngine(t, engine.Config{Shards: 1, Hooks: engine.Hooks{Message: g.hook}})
			ln := listen(t)
			s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: topics}), topics[0], 1)
			for _, name := range topics[1:] {
				waitSubscribers(t, eng, name, 1)
			}
			if batched {
				publish(t, eng, msg("gate", "", topics[0]))
				g.wait(t)
			}
			for _, m := range pubs {
				publish(t, eng, m)
			}
			close(g.release)
			if batched {
				s.expect(frame("gate", ""))
			}
			s.expect(want...)
			// Nothing else is on its way: a marker published now comes next.
			publish(t, eng, msg("end", "", topics[0]))
			s.expect(frame("end", ""))
		})
	}
}

func TestEnginePendingBatch(t *testing.T) {
	const k = 40
	g := newGate()
	eng := newEngine(t, engine.Config{Shards: 1, Capacity: 64, Hooks: engine.Hooks{Message: g.hook}})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{}), "", 1)
	publish(t, eng, msg("gate", "held"))
	g.wait(t)
	for i := range k {
		res := publish(t, eng, msg(strconv.Itoa(i), fmt.Sprintf("pending %d\nline 2", i)))
		// Nothing has been read past the gate: everything is queued.
		if res.Queued != i+2 || res.Subscribers != 1 {
			t.Fatalf("publish %d while held: %+v, want Queued %d, Subscribers 1", i, res, i+2)
		}
	}
	close(g.release)
	s.expect(frame("gate", "held"))
	for i := range k {
		s.expect(fmt.Sprintf("id: %d\ndata: pending %d\ndata: line 2\n\n", i, i))
	}
	// Once the shard has gone past them they are no longer queued.
	waitFor(t, "queued to drop", func() bool {
		res := publish(t, eng, &engine.Message{Comments: []string{"probe"}})
		s.expect(": probe\n\n")
		return res.Queued == 1
	})
}

func TestEnginePublishResult(t *testing.T) {
	g := newGate()
	eng := newEngine(t, engine.Config{Shards: 2, Capacity: 8, Hooks: engine.Hooks{Message: g.hook}})
	if res := publish(t, eng, msg("1", "nobody")); res != (engine.PublishResult{}) {
		t.Fatalf("without subscribers: %+v", res)
	}
	ln := listen(t)
	var streams []*stream
	for range 3 {
		s := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"x"}})
		s.expect(okFrame)
		streams = append(streams, s)
	}
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"y"}}), "x", 3)
	waitSubscribers(t, eng, "y", 1)
	if res := publish(t, eng, msg("2", "x", "x")); res.Subscribers != 3 {
		t.Errorf("publish to x: %+v, want 3 subscribers", res)
	}
	if res := publish(t, eng, msg("3", "y", "y")); res.Subscribers != 1 {
		t.Errorf("publish to y: %+v, want 1 subscriber", res)
	}
	if res := publish(t, eng, msg("4", "x and y", "x", "y")); res.Subscribers != 4 {
		t.Errorf("publish to x and y: %+v, want 4 subscribers", res)
	}
	if res := publish(t, eng, msg("5", "z", "z")); res != (engine.PublishResult{}) {
		t.Errorf("publish to z: %+v", res)
	}
	for _, s := range streams {
		s.expect(frame("2", "x"), frame("4", "x and y"))
	}
	s.expect(frame("3", "y"), frame("4", "x and y"))

	// Queued is bounded by the ring: the oldest unread message can be at
	// most Capacity back.
	publish(t, eng, msg("gate", "", "y"))
	g.wait(t)
	var res engine.PublishResult
	for i := range 20 {
		res = publish(t, eng, msg(strconv.Itoa(100+i), "", "y"))
	}
	if res.Queued != 8 {
		t.Errorf("Queued %d with a subscriber 21 behind, want the capacity 8", res.Queued)
	}
	close(g.release)
	s.expect(": lagged\nretry: 0\n\n")
	s.expectEOF()
	waitSubscribers(t, eng, "y", 0)
}

func TestEngineReplay(t *testing.T) {
	var u unsubscribes
	eng := newEngine(t, engine.Config{Capacity: 16, Hooks: engine.Hooks{Unsubscribe: u.hook}})
	ln := listen(t)
	for i := 1; i <= 5; i++ {
		publish(t, eng, msg("a"+strconv.Itoa(i), "m"+strconv.Itoa(i)))
	}

	found := serve(t, eng, ln, &engine.Subscriber{}, withLastEventID("a2"))
	found.expect(okFrame, frame("a3", "m3"), frame("a4", "m4"), frame("a5", "m5"))

	gap := serve(t, eng, ln, &engine.Subscriber{}, withLastEventID("nope"))
	gap.expect(okFrame, ": replay-gap\n\n")

	newest := serve(t, eng, ln, &engine.Subscriber{}, withLastEventID("a5"))
	newest.expect(okFrame)

	empty := serve(t, eng, ln, &engine.Subscriber{}, withLastEventID(""))
	empty.expect(okFrame, ": replay-gap\n\n")

	waitSubscribers(t, eng, "", 4)
	publish(t, eng, msg("a6", "m6"))
	for _, s := range []*stream{found, gap, newest, empty} {
		s.expect(frame("a6", "m6"))
	}

	// Evicted from the ring: a gap.
	for i := 7; i <= 30; i++ {
		publish(t, eng, msg("a"+strconv.Itoa(i), "m"+strconv.Itoa(i)))
	}
	late := serve(t, eng, ln, &engine.Subscriber{}, withLastEventID("a3"))
	late.expect(okFrame, ": replay-gap\n\n")
	publish(t, eng, msg("a31", "m31"))
	late.expect(frame("a31", "m31"))
}

func TestEngineReplayMultiTopic(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 16})
	ln := listen(t)
	publish(t, eng, msg("x1", "1", "a"))
	publish(t, eng, msg("x2", "2", "b"))
	publish(t, eng, msg("x3", "3", "a"))
	publish(t, eng, msg("x4", "4", "b", "a"))
	publish(t, eng, msg("x5", "5", "c"))
	// x2 is in b only: a resumes after what was published before x2.
	s := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a", "b"}}, withLastEventID("x2"))
	s.expect(okFrame, frame("x3", "3"), frame("x4", "4"))
	publish(t, eng, msg("x6", "6", "b"))
	s.expect(frame("x6", "6"))
}

func TestEngineReplaySeam(t *testing.T) {
	// A subscriber joins with a Last-Event-ID while messages are being
	// published: replay and live meet with no gap and no duplicate.
	const total = 400
	eng := newEngine(t, engine.Config{Capacity: 1024})
	ln := listen(t)
	reached := make(chan struct{})
	go func() {
		for i := 1; i <= total; i++ {
			if _, err := eng.Publish(msg(strconv.Itoa(i), "")); err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
			if i == 50 {
				close(reached)
			}
		}
	}()
	<-reached
	s := serve(t, eng, ln, &engine.Subscriber{}, withLastEventID("50"))
	s.expect(okFrame)
	for i := 51; i <= total; i++ {
		s.expect(frame(strconv.Itoa(i), ""))
	}
}

func TestEngineAutoID(t *testing.T) {
	eng := newEngine(t, engine.Config{AutoID: true})
	ln := listen(t)
	s := serve(t, eng, ln, &engine.Subscriber{})
	s.expect(okFrame)
	publish(t, eng, &engine.Message{Data: "one", HasData: true})
	publish(t, eng, msg("mine", "two"))
	publish(t, eng, &engine.Message{Data: "three", HasData: true, Topics: []string{"other"}})
	publish(t, eng, &engine.Message{Event: "e", Data: "four", HasData: true})
	s.expect(frame("1", "one"), frame("mine", "two"), "id: 4\nevent: e\ndata: four\n\n")

	// Replay from a server-given id.
	r := serve(t, eng, ln, &engine.Subscriber{}, withLastEventID("1"))
	r.expect(okFrame, frame("mine", "two"), "id: 4\nevent: e\ndata: four\n\n")

	// Without AutoID a message without id goes out without one.
	plain := newEngine(t, engine.Config{})
	p := serve(t, plain, ln, &engine.Subscriber{})
	p.expect(okFrame)
	publish(t, plain, &engine.Message{Data: "x", HasData: true})
	p.expect("data: x\n\n")
}

func TestEngineSubscribersAfterClose(t *testing.T) {
	var u unsubscribes
	eng := newEngine(t, engine.Config{Hooks: engine.Hooks{Unsubscribe: u.hook}})
	ln := listen(t)
	var streams []*stream
	var subs []*engine.Subscriber
	for i := range 6 {
		sub := &engine.Subscriber{}
		if i%2 == 1 {
			sub.Topics = []string{"", "t"}
		}
		s := serve(t, eng, ln, sub)
		s.expect(okFrame)
		streams = append(streams, s)
		subs = append(subs, sub)
	}
	waitSubscribers(t, eng, "", 6)
	waitSubscribers(t, eng, "t", 3)
	for _, s := range streams {
		s.conn.Close()
		if err := s.served(); err != nil {
			t.Logf("Serve after the client left: %v", err)
		}
	}
	if eng.Subscribers("") != 0 || eng.Subscribers("t") != 0 {
		t.Errorf("after the clients left: %d and %d subscribers", eng.Subscribers(""), eng.Subscribers("t"))
	}
	u.check(t, subs...)
	if res := publish(t, eng, msg("1", "x", "", "t")); res.Subscribers != 0 || res.Queued != 0 {
		t.Errorf("publish after everyone left: %+v", res)
	}
	if eng.Subscribers("never") != 0 {
		t.Error("an unknown topic has subscribers")
	}
}

func TestEngineKeepAlive(t *testing.T) {
	eng := newEngine(t, engine.Config{KeepAlive: 50 * time.Millisecond, KeepAliveText: "still here"})
	ln := listen(t)
	s := serve(t, eng, ln, &engine.Subscriber{})
	s.expect(okFrame, ": still here\n\n", ": still here\n\n")
	publish(t, eng, msg("1", "between"))
	for {
		f, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		if f == frame("1", "between") {
			break
		}
		if f != ": still here\n\n" {
			t.Fatalf("unexpected frame %q", f)
		}
	}
	s.expect(": still here\n\n")
}

func TestEngineMessageHook(t *testing.T) {
	var u unsubscribes
	hooks := engine.Hooks{
		Unsubscribe: u.hook,
		Message: func(_ any, m *engine.Message, s *engine.Subscriber) []byte {
			switch m.Event {
			case "skip":
				return nil
			case "change":
				return []byte("data: changed for " + strconv.FormatUint(s.ID, 10) + "\n\n")
			}
			return m.Frame
		},
	}
	eng := newEngine(t, engine.Config{Hooks: hooks})
	ln := listen(t)
	sub := &engine.Subscriber{Topics: []string{"a", "b"}}
	s := serve(t, eng, ln, sub)
	s.expect(okFrame)
	for _, m := range []*engine.Message{
		{Event: "skip", Data: "1", HasData: true, Topics: []string{"a"}},
		{Event: "keep", Data: "2", HasData: true, Topics: []string{"b"}},
		{Event: "skip", Data: "3", HasData: true, Topics: []string{"a", "b"}},
		{Event: "change", Data: "4", HasData: true, Topics: []string{"a"}},
	} {
		publish(t, eng, m)
	}
	s.expect("event: keep\ndata: 2\n\n", "data: changed for "+strconv.FormatUint(sub.ID, 10)+"\n\n")
	// Skipping kept the subscriber.
	if n := eng.Subscribers("a"); n != 1 {
		t.Fatalf("%d subscribers after skips", n)
	}
	for range 10 {
		publish(t, eng, &engine.Message{Event: "skip", Data: "x", HasData: true, Topics: []string{"b"}})
	}
	publish(t, eng, &engine.Message{Event: "keep", Data: "last", HasData: true, Topics: []string{"a"}})
	s.expect("event: keep\ndata: last\n\n")
	if u.total.Load() != 0 {
		t.Fatal("Unsubscribe ran for a subscriber that only skipped messages")
	}
}

func TestEngineConfig(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 100})
	cfg := eng.Config()
	if cfg.Capacity != 128 || cfg.Shards < 1 || cfg.KeepAlive != 60*time.Second || cfg.KeepAliveText != "keep-alive" ||
		cfg.WriteTimeout != 30*time.Second || cfg.Logger == nil {
		t.Errorf("defaults: %+v", cfg)
	}
	for _, bad := range []engine.Config{{Capacity: -1}, {Capacity: 1<<30 + 1}, {Timeout: -1}, {TimeoutRetry: -time.Second}} {
		if e, err := engine.New(bad); err == nil {
			e.Close(context.Background())
			t.Errorf("New(%+v) accepted", bad)
		}
	}
	if _, err := eng.Publish(&engine.Message{ID: "a\nb", Data: "x", HasData: true}); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("Publish of an injecting id: %v", err)
	}
}

func TestEnginePublishDuplicateTopics(t *testing.T) {
	// A message names a topic twice (a Publish hook may set Topics): each
	// subscriber still gets it once.
	eng := newEngine(t, engine.Config{})
	ln := listen(t)
	one := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a"}})
	one.expect(okFrame)
	two := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a", "b"}}), "a", 2)
	publish(t, eng, msg("1", "twice named", "a", "a"))
	publish(t, eng, msg("2", "next", "a"))
	two.expect(frame("1", "twice named"), frame("2", "next"))
	one.expect(frame("1", "twice named"))
	f, err := one.next()
	if err != nil {
		t.Fatal(err)
	}
	if f == frame("1", "twice named") {
		t.Fatal("BUG: engine/engine.go Publish appends m to the ring once per entry of m.Topics, duplicates included, " +
			"so a single-topic subscriber gets a message twice when a topic is named twice; fix: skip repeated topics in Publish")
	}
	if f != frame("2", "next") {
		t.Fatalf("got %q, want message 2", f)
	}
}

// TestEngineTopicsDoNotPileUp: subscribers of names nobody publishes to
// leave no topic behind (a client must not grow the topic map at will),
// while a topic that holds messages stays for replay.
func TestEngineTopicsDoNotPileUp(t *testing.T) {
	e := newEngine(t, engine.Config{})
	ln := listen(t)
	kept := &engine.Message{Data: "x", HasData: true, Topics: []string{"kept"}}
	if _, err := e.Publish(kept); err != nil {
		t.Fatal(err)
	}
	base := e.Topics()
	for i := range 200 {
		s := serve(t, e, ln, &engine.Subscriber{Topics: []string{fmt.Sprintf("random-%d", i), "kept"}})
		s.expect(": ok\n\n")
		s.conn.Close()
		if err := <-s.done; err != nil {
			t.Fatalf("Serve: %v", err)
		}
		s.done <- nil // for serve's cleanup
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Topics() != base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.Topics(); n != base {
		t.Fatalf("%d topics after 200 subscribers of random names came and went, want %d", n, base)
	}
	if e.Subscribers("kept") != 0 {
		t.Fatalf("subscribers left on kept: %d", e.Subscribers("kept"))
	}
}
