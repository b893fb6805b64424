package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/assets"
	"wall/server/internal/longpoll"
	"wall/server/internal/netpoll"
	"wall/views"
	"wall/wall"
)

// engineEnv is a server with the long-poll engine enabled: its listener
// is the Server's Listener, as in main.
type engineEnv struct {
	*testEnv
	handled atomic.Int64 // requests net/http handed to the server
}

func newEngineEnv(t *testing.T, cfg Config) *engineEnv {
	t.Helper()
	return newEngineEnvCache(t, cfg, 10)
}

// newEngineEnvCache is newEngineEnv with walls that keep cache messages.
func newEngineEnvCache(t *testing.T, cfg Config, cache int) *engineEnv {
	t.Helper()
	return newEngineEnvBroker(t, cfg, cache, nil)
}

// newEngineEnvBroker is newEngineEnvCache with the server's broker made by
// wrap from the in-process one (nil: that one itself).
func newEngineEnvBroker(t *testing.T, cfg Config, cache int, wrap func(*wall.MemoryBroker) wall.Broker) *engineEnv {
	t.Helper()
	hub := wall.NewHub(cache)
	broker := wall.NewMemoryBroker(hub)
	var b wall.Broker = broker
	if wrap != nil {
		b = wrap(broker)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), hub, b, views.FS, assets.FS)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	e := &engineEnv{testEnv: &testEnv{t: t, hub: hub, broker: broker, srv: srv,
		client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.handled.Add(1)
		e.inflight.Add(1)
		defer e.inflight.Add(-1)
		srv.ServeHTTP(w, r)
	}))
	ts.Listener = srv.Listener(ts.Listener)
	ts.Start()
	e.ts, e.addr = ts, ts.Listener.Addr().String()
	t.Cleanup(func() {
		hub.Close()
		tr.CloseIdleConnections()
		ts.Close()
		waitDone(t, "srv.Wait after cleanup", 10*time.Second, srv.Wait)
		if n := srv.engine.Stats().Conns; n != 0 {
			t.Errorf("%d connections left in the engine", n)
		}
	})
	return e
}

// newSlowReaderEnv is an engine taking 1 MiB posts, with a message m on
// the default wall and a connection rc it holds between polls, whose
// small receive buffer cannot take a big answer at once.
func newSlowReaderEnv(t *testing.T) (*engineEnv, *wireConn, testMsg) {
	t.Helper()
	e := newEngineEnv(t, Config{BodyLimit: 1 << 20})
	m := e.post("", "x")
	rc := e.dial()
	rc.c.(*net.TCPConn).SetReadBuffer(64 << 10)
	e.hold(rc)
	return e, rc, m
}

// held waits until the engine holds n connections.
func (e *engineEnv) held(n int) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d connections in the engine", n), 5*time.Second,
		func() bool { return e.srv.engine.Stats().Conns == n })
}

// waitingFast waits until n polls wait the fast way, on their sockets.
func (e *engineEnv) waitingFast(n int) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d polls waiting on their sockets", n), 5*time.Second,
		func() bool { return e.srv.engine.Stats().Waiting == n })
}

// hold makes the engine hold rc: a poll on wall "h" waits (net/http hands
// it to the engine), is answered, and the connection stays with the engine.
func (e *engineEnv) hold(rc *wireConn) {
	e.t.Helper()
	last := uint64(0)
	if w := e.hub.Lookup("h"); w != nil {
		last = w.Last()
	}
	rc.send(getPoll(fmt.Sprintf("wall=h&cursor=%d", last)))
	// Parked in the engine means subscribed to wall h (a poll waiting in
	// net/http is not). Counting the engine's connections instead raced
	// with other connections entering it.
	waitFor(e.t, "engine holds the connection", 5*time.Second, func() bool {
		w := e.hub.Lookup("h")
		return w != nil && w.Subscribers() > 0
	})
	e.publish("h", "wake")
	if resp := rc.response(5 * time.Second); resp.Status != 200 || decodePoll(e.t, resp.Body).Messages == nil {
		e.t.Fatalf("hold: %d %s", resp.Status, resp.Body)
	}
}

// getPoll is a GET poll request.
func getPoll(query string, extra ...string) string {
	return "GET /a/message/updates?" + query + " HTTP/1.1\r\nHost: x\r\n" + strings.Join(extra, "") + "\r\n"
}

// postPoll is a POST poll request with the test XSRF cookie and field.
func postPoll(form url.Values, extra ...string) string {
	f := url.Values{"_xsrf": {testXSRF}}
	for k, v := range form {
		f[k] = v
	}
	body := f.Encode()
	return fmt.Sprintf("POST /a/message/updates HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=%s\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n%s\r\n%s",
		testXSRF, len(body), strings.Join(extra, ""), body)
}

// netHTTPPoll polls through the net/http path of a server without the
// engine, for the bytes the engine must reproduce.
func wantPollBody(t *testing.T, e *engineEnv, cursor string) []byte {
	t.Helper()
	w := e.hub.Lookup(wall.DefaultWall)
	c, _ := wall.ParseCursor(cursor)
	res, _ := w.Poll(c)
	return appendPollResponse(nil, res)
}

// checkPollResp checks a 200 poll answer, framed by Content-Length, whose
// body is want.
func checkPollResp(t *testing.T, resp *wireResponse, want []byte) {
	t.Helper()
	if resp.Status != http.StatusOK || resp.Header.Get("Content-Type") != jsonType ||
		resp.Header.Get("Content-Length") != strconv.Itoa(len(resp.Body)) {
		t.Errorf("answer %s", resp.Head)
	}
	if !bytes.Equal(resp.Body, want) {
		t.Errorf("body\n %s\nwant\n %s", resp.Body, want)
	}
}

// GET and POST polls that wait are held by the engine, answered as
// net/http answers them, and the keep-alive re-polls on the same
// connection are served by the engine without net/http.
func TestEngineParksAndRepolls(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			e := newEngineEnv(t, Config{})
			m1 := e.post("", "one")
			req := func(cursor string, extra ...string) string {
				if method == "GET" {
					return getPoll("cursor="+cursor, extra...)
				}
				return postPoll(url.Values{"cursor": {cursor}}, extra...)
			}
			rc := e.dial()
			before := e.handled.Load()
			rc.send(req(m1.ID))
			e.held(1)
			if e.inflight.Load() != 0 {
				t.Fatal("parked poll still in net/http")
			}
			m2 := e.post("", "two")
			resp := rc.response(5 * time.Second)
			checkPollResp(t, resp, wantPollBody(t, e, m1.ID))
			if p := decodePoll(t, resp.Body); p.Messages == nil || (*p.Messages)[0] != m2 {
				t.Fatalf("answer %s", resp.Body)
			}
			handled := e.handled.Load() - before // the first poll and the post

			// Re-polls on the same connection: an immediate answer, then
			// a wait, both served by the engine.
			rc.send(req(m1.ID))
			resp = rc.response(5 * time.Second)
			checkPollResp(t, resp, wantPollBody(t, e, m1.ID))
			rc.send(req("2"))
			e.held(1)
			m3 := e.post("", "three")
			resp = rc.response(5 * time.Second)
			checkPollResp(t, resp, wantPollBody(t, e, "2"))
			if p := decodePoll(t, resp.Body); (*p.Messages)[0] != m3 {
				t.Fatalf("answer %s", resp.Body)
			}
			if got := e.handled.Load() - before; got != handled+1 { // + the third post
				t.Errorf("net/http handled %d requests, want %d", got, handled+1)
			}
		})
	}
}

// A held poll answers the timeout object when PollTimeout passes, and
// so does a keep-alive re-poll.
func TestEngineTimeout(t *testing.T) {
	e := newEngineEnv(t, Config{PollTimeout: 100 * time.Millisecond})
	m := e.post("", "x")
	rc := e.dial()
	for range 2 {
		start := time.Now()
		rc.send(getPoll("cursor=" + m.ID))
		resp := rc.response(5 * time.Second)
		checkPollResp(t, resp, timeoutResponse(wall.Cursor{Set: true, ID: m.ID}))
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("answered after %v", d)
		}
	}
	rc.send(getPoll("wall=empty"))
	resp := rc.response(5 * time.Second)
	checkPollResp(t, resp, []byte(`{"cursor": ""}`))
	rc.c.Close()
	e.held(0)
	waitFor(t, "empty wall dropped", 5*time.Second, func() bool { return e.hub.Lookup("empty") == nil })
}

// Pollers that hang up while held leave no goroutine, no subscriber, no
// registry entry and no wall.
func TestEngineHangUps(t *testing.T) {
	e := newEngineEnv(t, Config{})
	e.post("", "warm")
	e.client.CloseIdleConnections()
	waitFor(t, "idle server", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
	base := goroutineBaseline()
	var conns []*wireConn
	for i := range 20 {
		rc := e.dial()
		if i%2 == 0 {
			rc.send(getPoll("wall=hang"))
		} else {
			rc.send(postPoll(url.Values{"wall": {"hang"}}))
		}
		conns = append(conns, rc)
	}
	e.held(20)
	waitFor(t, "held polls subscribed", 5*time.Second, func() bool {
		w := e.hub.Lookup("hang")
		return w != nil && w.Subscribers() == 20
	})
	for _, rc := range conns {
		rc.c.Close()
	}
	e.held(0)
	waitGoroutines(t, base)
	if e.hub.Lookup("hang") != nil {
		t.Errorf("empty wall kept: %v", e.hub.Names())
	}
}

// Shutdown answers every held poll with the timeout object and closes
// the connections; Server.Wait returns.
func TestEngineShutdown(t *testing.T) {
	e := newEngineEnv(t, Config{})
	m := e.post("", "x")
	var conns []*wireConn
	for range 5 {
		rc := e.dial()
		rc.send(getPoll("cursor=" + m.ID))
		conns = append(conns, rc)
	}
	idle := e.dial() // held, between requests
	e.hold(idle)
	e.held(6)
	e.hub.Close()
	for _, rc := range conns {
		resp := rc.response(5 * time.Second)
		checkPollResp(t, resp, timeoutResponse(wall.Cursor{Set: true, ID: m.ID}))
		if !resp.Closes() {
			t.Errorf("no Connection: close at shutdown")
		}
		rc.closed(5 * time.Second)
	}
	idle.closed(5 * time.Second)
	waitDone(t, "srv.Wait", 5*time.Second, e.srv.Wait)
}

// Requests the engine does not serve go back to net/http with the bytes
// it read, and are served exactly as before.
func TestEngineHandsBack(t *testing.T) {
	e := newEngineEnv(t, Config{})
	e.post("", "x")
	rc := e.dial()
	hold := func() { e.hold(rc) }
	hold()
	rc.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := rc.response(5 * time.Second); resp.Status != 200 || !bytes.Contains(resp.Body, []byte(`id="messageform"`)) {
		t.Fatalf("page: %d", resp.Status)
	}
	hold()
	body := url.Values{"_xsrf": {testXSRF}, "body": {"via engine conn"}}.Encode()
	rc.send(fmt.Sprintf("POST /a/message/new HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=%s\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", testXSRF, len(body), body))
	if resp := rc.response(5 * time.Second); resp.Status != 200 || decodeMsg(t, resp.Body).Body != "via engine conn" {
		t.Fatalf("post: %d %s", resp.Status, resp.Body)
	}
	hold()
	rc.send("GET /a/message/new HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := rc.response(5 * time.Second); resp.Status != http.StatusMethodNotAllowed {
		t.Fatalf("GET /a/message/new: %d", resp.Status)
	}
	hold()
	// Errors the engine leaves to net/http: bad XSRF, bad wall. Any cursor
	// is served (an unknown one gets the whole cache and reset).
	for _, r := range []struct {
		req  string
		code int
	}{
		{postPoll(url.Values{"_xsrf": {"nope"}}), 403},
		{getPoll("wall=" + strings.Repeat("w", 80)), 400},
		{getPoll("cursor=a%20b"), 200},
		{"HEAD /a/message/updates HTTP/1.1\r\nHost: x\r\n\r\n", 405},
	} {
		rc.send(r.req)
		method, _, _ := strings.Cut(r.req, " ")
		if resp := rc.responseTo(method, 5*time.Second); resp.Status != r.code {
			t.Errorf("%q: %v, want %d", r.req, resp, r.code)
		}
		hold()
	}
	// An oversized head goes back too; net/http serves the poll.
	rc.send(getPoll("cursor=0", "X-Pad: "+strings.Repeat("p", 9000)+"\r\n"))
	if resp := rc.response(5 * time.Second); resp.Status != 200 || decodePoll(t, resp.Body).Messages == nil {
		t.Fatalf("big poll: %d %s", resp.Status, resp.Body)
	}
	// A poll handed back to net/http that waits is taken by the engine
	// again.
	last := e.hub.Lookup(wall.DefaultWall).Last()
	rc.send(getPoll(fmt.Sprintf("cursor=%d", last), "X-Pad: "+strings.Repeat("p", 9000)+"\r\n"))
	e.held(1)
	waitFor(t, "net/http done", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
	e.post("", "y")
	if resp := rc.response(5 * time.Second); resp.Status != 200 || decodePoll(t, resp.Body).Messages == nil {
		t.Fatalf("big poll: %d %s", resp.Status, resp.Body)
	}
	// HTTP/1.0 on a held connection goes back to net/http.
	rc.send("GET /a/message/updates?cursor=0 HTTP/1.0\r\n\r\n")
	if resp := rc.response(5 * time.Second); resp.Status != 200 || decodePoll(t, resp.Body).Messages == nil {
		t.Fatalf("HTTP/1.0 poll: %d %s", resp.Status, resp.Body)
	}
	rc.closed(5 * time.Second)
}

// Pipelined requests are answered in order, whether they arrive with a
// poll or while it waits.
func TestEnginePipelined(t *testing.T) {
	e := newEngineEnv(t, Config{})
	m := e.post("", "x")
	rc := e.dial()
	e.hold(rc)
	// The first is answered at once, the second waits, the third comes
	// while it waits.
	rc.send(getPoll("cursor=0") + getPoll("cursor="+m.ID))
	if resp := rc.response(5 * time.Second); resp.Status != 200 || decodePoll(t, resp.Body).Messages == nil {
		t.Fatalf("first: %d %s", resp.Status, resp.Body)
	}
	e.held(1)
	rc.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // the held poll sees the bytes
	m2 := e.post("", "y")
	if resp := rc.response(5 * time.Second); resp.Status != 200 || (*decodePoll(t, resp.Body).Messages)[0] != m2 {
		t.Fatalf("second: %d %s", resp.Status, resp.Body)
	}
	if resp := rc.response(5 * time.Second); resp.Status != 200 || string(resp.Body) != "ok\n" {
		t.Fatalf("third: %d %s", resp.Status, resp.Body)
	}
	// Pipelined behind a poll that net/http hands to the engine.
	rc2 := e.dial()
	rc2.send(getPoll("cursor="+m2.ID) + getPoll("cursor=0"))
	e.held(1)
	e.post("", "z")
	for i := range 2 {
		if resp := rc2.response(5 * time.Second); resp.Status != 200 || decodePoll(t, resp.Body).Messages == nil {
			t.Fatalf("rc2 %d: %d %s", i, resp.Status, resp.Body)
		}
	}
}

// HTTP/1.0 polls stay in net/http; "Connection: close" polls are held
// and answered with Connection: close, then the connection closes.
func TestEngineConnectionClose(t *testing.T) {
	e := newEngineEnv(t, Config{})
	m := e.post("", "x")
	old := e.dial()
	old.send("GET /a/message/updates?cursor=" + m.ID + " HTTP/1.0\r\n\r\n")
	e.parked(1)
	if e.srv.engine.Stats().Conns != 0 {
		t.Fatal("HTTP/1.0 poll taken by the engine")
	}
	rc := e.dial()
	rc.send(getPoll("cursor="+m.ID, "Connection: close\r\n"))
	e.held(1)
	rc2 := e.dial() // a re-poll held by the engine asks to close
	e.hold(rc2)
	rc2.send(getPoll("cursor="+m.ID, "Connection: close\r\n"))
	e.held(2)
	e.post("", "y")
	for _, c := range []*wireConn{old, rc, rc2} {
		resp := c.response(5 * time.Second)
		if resp.Status != 200 || decodePoll(t, resp.Body).Messages == nil || !resp.Closes() {
			t.Errorf("answer %s%s", resp.Head, resp.Body)
		}
		c.closed(5 * time.Second)
	}
	e.held(0)
}

// A keep-alive poll waiting on its socket is answered by a flusher
// worker; when the socket cannot take the whole answer (a client that
// does not read yet), a goroutine writes the rest, and the connection
// goes on serving polls.
func TestEngineWorkerAnswers(t *testing.T) {
	e, rc, m := newSlowReaderEnv(t)
	rc.send(getPoll("cursor=" + m.ID))
	e.waitingFast(1)
	big := strings.Repeat("&", 1<<20) // 7 MiB of JSON with its html
	e.publish("", big)
	waitFor(t, "a worker hands off", 5*time.Second, func() bool { return e.srv.engine.Stats().WorkerHandoffs == 1 })
	time.Sleep(50 * time.Millisecond) // the goroutine blocks writing the rest
	resp := rc.response(5 * time.Second)
	checkPollResp(t, resp, wantPollBody(t, e, m.ID))
	if p := decodePoll(t, resp.Body); len(*p.Messages) != 1 || (*p.Messages)[0].Body != big {
		t.Fatalf("answer of %d bytes is not the big message", len(resp.Body))
	}
	rc.send(getPoll("cursor=0"))
	if resp := rc.response(5 * time.Second); resp.Status != 200 || len(*decodePoll(t, resp.Body).Messages) != 2 {
		t.Fatalf("re-poll: %d, %d bytes", resp.Status, len(resp.Body))
	}
}

// Many keep-alive pollers (GET and POST, some hanging up and coming back
// with their cursor) race with concurrent posts: each sees every message
// once, in order, whether its goroutine or a flusher worker answered.
func TestEngineConcurrentPolls(t *testing.T) {
	const pollers, posts = 48, 300
	e := newEngineEnvCache(t, Config{}, posts) // nobody misses any
	addr := e.ts.Listener.Addr().String()
	errs := make(chan error, pollers)
	for i := range pollers {
		go func() { errs <- enginePoller(addr, i, posts) }()
	}
	e.held(pollers)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range posts / 4 {
				if _, _, err := e.broker.Publish(context.Background(), wall.Post{Wall: wall.DefaultWall, ID: uuid.NewString(), Body: fmt.Sprintf("p%d-%d", p, j)}); err != nil {
					t.Error(err)
					return
				}
				if j%16 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	for range pollers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if e.srv.engine.Stats().WorkerAnswers == 0 {
		t.Error("no poll was answered by a worker")
	}
	e.held(0)
}

// enginePoller polls the default wall by seq cursor until it has seq 1
// to last, checking that each answer continues the one before. Poller i
// uses POST if i is odd, every third one sends every other request in two
// pieces, and every fifth one hangs up now and then and resumes on a new
// connection.
func enginePoller(addr string, i int, last uint64) error {
	var (
		c      net.Conn
		br     *bufio.Reader
		cursor uint64
		polls  int
	)
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for cursor < last {
		if c == nil {
			var err error
			if c, err = net.Dial("tcp", addr); err != nil {
				return err
			}
			br = bufio.NewReader(c)
		}
		q := fmt.Sprintf("cursor=%d", cursor)
		req := getPoll(q)
		if i%2 == 1 {
			req = postPoll(url.Values{"cursor": {strconv.FormatUint(cursor, 10)}})
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if i%3 == 2 && polls%2 == 0 {
			// In two pieces: the engine reads the first alone.
			k := 1 + polls*37%(len(req)-1)
			if _, err := io.WriteString(c, req[:k]); err != nil {
				return err
			}
			time.Sleep(200 * time.Microsecond)
			req = req[k:]
		}
		if _, err := io.WriteString(c, req); err != nil {
			return err
		}
		resp, err := readWireResponse(br)
		if err != nil {
			return fmt.Errorf("poller %d at %d: %v", i, cursor, err)
		}
		if resp.Status != 200 || resp.Closes() {
			return fmt.Errorf("poller %d at %d: %s%s", i, cursor, resp.Head, resp.Body)
		}
		var p struct {
			Messages []struct{ Seq uint64 }
		}
		if err := json.Unmarshal(resp.Body, &p); err != nil {
			return err
		}
		for _, m := range p.Messages {
			if m.Seq != cursor+1 {
				return fmt.Errorf("poller %d: seq %d after %d", i, m.Seq, cursor)
			}
			cursor = m.Seq
		}
		if polls++; i%5 == 0 && polls%7 == 0 {
			c.Close() // hang up between polls; the next one reconnects
			c = nil
		}
	}
	return nil
}

// blockingFlush holds a flusher worker until release is closed.
type blockingFlush struct{ held, release chan struct{} }

func (b blockingFlush) Flush(*net.Buffers, *netpoll.Writer) {
	b.held <- struct{}{}
	<-b.release
}

type noFlush struct{}

func (noFlush) Flush(*net.Buffers, *netpoll.Writer) {}

// With every flusher worker busy and its queue full, a waiting poll is
// still answered at once: Send runs its flush on a goroutine of its own.
func TestEngineFlusherQueueFull(t *testing.T) {
	e := newEngineEnv(t, Config{})
	m := e.post("", "x")
	rc := e.dial()
	e.hold(rc)
	rc.send(getPoll("cursor=" + m.ID))
	e.waitingFast(1)

	b := blockingFlush{held: make(chan struct{}), release: make(chan struct{})}
	workers := runtime.GOMAXPROCS(0)
	for range workers {
		if !e.srv.flusher.Submit(b) {
			t.Fatal("queue full too early")
		}
	}
	for range workers {
		<-b.held
	}
	defer close(b.release)
	for e.srv.flusher.Submit(noFlush{}) {
	}
	m2 := e.post("", "y")
	resp := rc.response(5 * time.Second)
	if p := decodePoll(t, resp.Body); resp.Status != 200 || p.Messages == nil || (*p.Messages)[0] != m2 {
		t.Fatalf("answer %v", resp)
	}
}

// Keep-alive connections alternate between two walls while messages are
// posted to both: every answer holds only messages of the wall it asked
// for, after the cursor it sent (or is that cursor's timeout). The hook
// widens the window in which a poll's owner, having parked it, may take
// it back: by then a worker may have answered it and the reactor parked
// the connection's next request, which the owner must not answer.
func TestEngineAnswersTheRequestAsked(t *testing.T) {
	const conns = 100
	var n atomic.Int64
	e := newEngineEnvCache(t, Config{PollTimeout: 300 * time.Millisecond, testHookParked: func() {
		if n.Add(1)%3 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}}, 10000)
	walls := [2]string{"a", "b"}
	for _, w := range walls {
		e.publish(w, w+"-first")
	}
	addr := e.ts.Listener.Addr().String()
	stop := make(chan struct{})
	var posters sync.WaitGroup
	for _, w := range walls {
		posters.Add(1)
		go func() {
			defer posters.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if _, _, err := e.broker.Publish(context.Background(), wall.Post{Wall: w, ID: uuid.NewString(), Body: fmt.Sprintf("%s-%d", w, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	errs := make(chan error, conns)
	end := time.Now().Add(1500 * time.Millisecond)
	for i := range conns {
		go func() { errs <- alternatingPoller(addr, i, walls, end) }()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	posters.Wait()
}

// alternatingPoller polls walls in turn on one connection until end, each
// from the last seq it saw of that wall, and checks every answer.
func alternatingPoller(addr string, i int, walls [2]string, end time.Time) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	br := bufio.NewReader(c)
	var last [2]uint64
	for k := 0; time.Now().Before(end); k++ {
		w := k % 2
		cursor := strconv.FormatUint(last[w], 10)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, getPoll("wall="+walls[w]+"&cursor="+cursor)); err != nil {
			return err
		}
		resp, err := readWireResponse(br)
		if err != nil {
			return fmt.Errorf("poller %d: %v", i, err)
		}
		b := resp.Body
		if resp.Status != 200 || resp.Closes() {
			return fmt.Errorf("poller %d: %s%s", i, resp.Head, b)
		}
		var p struct {
			Messages *[]testMsg
			Cursor   string
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("poller %d: %q: %v", i, b, err)
		}
		if p.Messages == nil {
			if p.Cursor != cursor {
				return fmt.Errorf("poller %d: wall %s cursor %s: timeout answer %s", i, walls[w], cursor, b)
			}
			continue
		}
		for _, m := range *p.Messages {
			if !strings.HasPrefix(m.Body, walls[w]+"-") || m.Seq <= last[w] {
				return fmt.Errorf("poller %d: wall %s cursor %s: answer %s", i, walls[w], cursor, b)
			}
			last[w] = m.Seq
		}
	}
	return nil
}

// The engine answers a poll it refuses (XSRF, wall, cursor, a cursor the
// broker cannot place) itself, with the bytes net/http writes, without
// handing it back: nothing is checked twice, the broker is asked once.
func TestEngineAnswersErrors(t *testing.T) {
	var sb *syncFailBroker
	e := newEngineEnvBroker(t, Config{}, 10, func(m *wall.MemoryBroker) wall.Broker {
		sb = &syncFailBroker{MemoryBroker: m}
		return sb
	})
	e.post("", "x")
	held := e.dial()
	for _, req := range []string{
		postPoll(url.Values{"_xsrf": {"nope"}}),
		postPoll(url.Values{"_xsrf": {"nope"}}, "Connection: close\r\n"),
		getPoll("wall=" + strings.Repeat("w", 80)),
		getPoll("wall=a%20b"),
		getPoll("cursor=99"), // ahead of the wall, the broker away: 503
	} {
		sb.fail.Store(true)
		fresh := e.dial() // net/http serves a connection's first request
		fresh.send(req)
		want := fresh.response(5 * time.Second)

		e.hold(held)
		handled, syncs := e.handled.Load(), sb.calls.Load()
		held.send(req)
		resp := held.response(5 * time.Second)
		sb.fail.Store(false)
		if resp.Status != want.Status || resp.Status < 400 ||
			resp.Header.Get("Content-Type") != want.Header.Get("Content-Type") || !bytes.Equal(resp.Body, want.Body) {
			t.Errorf("%q:\nengine   %v\nnet/http %v", req, resp, want)
		}
		if n := e.handled.Load() - handled; n != 0 {
			t.Errorf("%q: handed back to net/http", req)
		}
		if n := sb.calls.Load() - syncs; resp.Status == http.StatusServiceUnavailable && n != 1 {
			t.Errorf("%q: %d syncs", req, n)
		}
		if resp.Closes() != want.Closes() {
			t.Errorf("%q: Connection: close %v, net/http %v", req, resp.Closes(), want.Closes())
		}
		if resp.Closes() {
			held.closed(5 * time.Second)
			held = e.dial()
		}
	}
}

// Requests pipelined behind a poll the engine refuses are answered in
// order, whether they came whole with it or in pieces after it.
func TestEnginePipelinedAfterRefusal(t *testing.T) {
	e := newEngineEnv(t, Config{})
	e.post("", "x")
	rc := e.dial()
	e.hold(rc)
	refused := getPoll("wall=a%20b")
	next := getPoll("cursor=0")
	rc.send(refused + next + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + refused + next[:10])
	time.Sleep(20 * time.Millisecond) // the engine reads the half request alone
	rc.send(next[10:])
	for i, want := range []int{400, 200, 200, 400, 200} {
		resp := rc.response(5 * time.Second)
		if resp.Status != want {
			t.Fatalf("answer %d: %v, want %d", i, resp, want)
		}
		if want == 200 && i != 2 && decodePoll(t, resp.Body).Messages == nil {
			t.Fatalf("answer %d: %s", i, resp.Body)
		}
	}
}

// Pipelined polls written at once, more than one read of the engine
// takes and ending on request boundaries, are all answered, in order,
// without the client sending more.
func TestEnginePipelinedReadBoundary(t *testing.T) {
	e := newEngineEnv(t, Config{})
	e.post("", "x")
	rc := e.dial()
	e.hold(rc)
	const size, n = 512, 3 * (longpoll.MaxHead + longpoll.MaxBody) / 512
	var all strings.Builder
	for i := range n {
		req := getPoll(fmt.Sprintf("cursor=0&i=%d", i), "X-Pad: ")
		req = req[:len(req)-2] + strings.Repeat("p", size-len(req)-2) + "\r\n\r\n"
		if len(req) != size {
			t.Fatalf("request of %d bytes", len(req))
		}
		all.WriteString(req)
	}
	go func() { io.WriteString(rc.c, all.String()) }()
	for i := range n {
		if resp := rc.response(5 * time.Second); resp.Status != 200 || decodePoll(t, resp.Body).Messages == nil {
			t.Fatalf("answer %d: %d %s", i, resp.Status, resp.Body)
		}
	}
}

// A panic while the engine serves a connection ends that connection
// only: it is closed and leaves the engine, and the others go on.
func TestEnginePanicEndsOneConnection(t *testing.T) {
	var armed atomic.Bool
	e := newEngineEnv(t, Config{testHookParked: func() {
		if armed.CompareAndSwap(true, false) {
			panic("test: panic in the engine")
		}
	}})
	m := e.post("", "x")
	doomed := e.dial()
	e.hold(doomed)
	armed.Store(true)
	doomed.send(getPoll("cursor=" + m.ID)) // parks: the hook panics
	doomed.closed(5 * time.Second)
	e.held(0)
	other := e.dial()
	other.send(getPoll("cursor=" + m.ID))
	e.held(1)
	m2 := e.post("", "y")
	if resp := other.response(5 * time.Second); resp.Status != 200 || (*decodePoll(t, resp.Body).Messages)[0] != m2 {
		t.Fatalf("answer %d %s", resp.Status, resp.Body)
	}
}
