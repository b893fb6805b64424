package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/assets"
	"wall/server/internal/admit"
	"wall/views"
	"wall/wall"
)

// testEnv is a server built as main builds it (hub, in-process broker,
// embedded views and assets), behind a real loopback listener: either
// mounted as a plain http.Handler (newTestEnv: every poll through
// net/http) or served as main serves it (newMainEnv: through
// Server.Listener, with the long-poll engine).
type testEnv struct {
	t      *testing.T
	hub    *wall.Hub
	broker *wall.MemoryBroker
	srv    *Server
	ts     *httptest.Server // newTestEnv's server; nil for newMainEnv
	client *http.Client
	url    string // http://127.0.0.1:port
	addr   string // 127.0.0.1:port
	engine bool   // served through srv.Listener
	// inflight counts requests inside the server's handler (a WebSocket
	// counts until its handler returns).
	inflight atomic.Int64
	// httpPolls maps a client's address to its pollStats.
	httpPolls sync.Map
}

// pollStats counts the poll requests of one client connection that
// net/http handed to the server's ServeHTTP, and those that returned. A
// poll the engine reads and admits itself is in neither; one that net/http
// read and the engine took over to wait returned without an answer.
type pollStats struct{ started, done atomic.Int64 }

// testXSRF is a valid version-2 token used as both cookie and field by
// tests that are not about XSRF.
var testXSRF = admit.EncodeXSRF([]byte("0123456789abcdef"))

// newServer builds the server of an environment.
func newServer(t *testing.T, cfg Config, cacheSize int) *testEnv {
	t.Helper()
	hub := wall.NewHub(cacheSize)
	broker := wall.NewMemoryBroker(hub)
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), hub, broker, views.FS, assets.FS)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}
	return &testEnv{t: t, hub: hub, broker: broker, srv: srv,
		client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// handler is srv's ServeHTTP, counting what net/http hands it.
func (e *testEnv) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.inflight.Add(1)
		defer e.inflight.Add(-1)
		if r.URL.Path == "/a/message/updates" {
			v, _ := e.httpPolls.LoadOrStore(r.RemoteAddr, new(pollStats))
			st := v.(*pollStats)
			st.started.Add(1)
			defer st.done.Add(1)
		}
		e.srv.ServeHTTP(w, r)
	})
}

// newTestEnv starts a server with cfg and a cache of cacheSize messages per
// wall, mounted as a plain handler: no Listener, so every poll is served
// by net/http. Cleanup closes the hub first (polls answer, WebSockets
// close), then the listener, then waits for WebSocket handlers.
func newTestEnv(t *testing.T, cfg Config, cacheSize int) *testEnv {
	t.Helper()
	e := newServer(t, cfg, cacheSize)
	e.ts = httptest.NewServer(e.handler())
	e.url, e.addr = e.ts.URL, e.ts.Listener.Addr().String()
	t.Cleanup(func() {
		e.hub.Close()
		e.client.CloseIdleConnections()
		e.ts.Close()
		waitDone(t, "srv.Wait after cleanup", 10*time.Second, e.srv.Wait)
	})
	return e
}

// newMainEnv is newTestEnv served as main's run serves it: an http.Server
// with main's settings over srv.Listener on a loopback listener, so polls
// that wait are parked in the long-poll engine, which reads the next
// requests of their connections itself. Cleanup shuts down in main's
// order: hub.Close, http.Server.Shutdown, srv.Wait.
func newMainEnv(t *testing.T, cfg Config, cacheSize int) *testEnv {
	t.Helper()
	e := newServer(t, cfg, cacheSize)
	e.engine = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.url = "http://" + e.addr
	hs := &http.Server{ // as main.go's run
		Handler:           e.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(e.srv.Listener(ln)) }()
	t.Cleanup(func() {
		e.hub.Close()
		e.client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("http.Server.Shutdown: %v", err)
		}
		waitDone(t, "srv.Wait after Shutdown", 10*time.Second, e.srv.Wait)
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return e
}

// base is the server's URL. (Environments built elsewhere may set only ts.)
func (e *testEnv) base() string {
	if e.url == "" {
		return e.ts.URL
	}
	return e.url
}

// serve runs one request through srv.ServeHTTP without a listener.
func (e *testEnv) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec
}

// formRequest builds a form-urlencoded POST to path (which may carry a
// query) with the test XSRF cookie and field added.
func formRequest(path string, form url.Values) *http.Request {
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	if _, ok := f["_xsrf"]; !ok {
		f.Set("_xsrf", testXSRF)
	}
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: admit.XSRFCookie, Value: testXSRF})
	return req
}

// postForm posts form (plus the test XSRF token) to path through the real
// listener and returns the status and body.
func (e *testEnv) postForm(path string, form url.Values) (int, []byte) {
	e.t.Helper()
	req := formRequest(path, form)
	req.RequestURI = ""
	u, _ := url.Parse(e.base() + path)
	req.URL, req.Host = u, u.Host
	return e.do(req)
}

func (e *testEnv) do(req *http.Request) (int, []byte) {
	e.t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, b
}

// get fetches path through the real listener.
func (e *testEnv) get(path string) (int, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.base()+path, nil)
	return e.do(req)
}

// post publishes body on wall name (default wall when empty) through POST
// /a/message/new and returns the stored message.
func (e *testEnv) post(name, body string) testMsg {
	e.t.Helper()
	form := url.Values{"body": {body}}
	if name != "" {
		form.Set("wall", name)
	}
	code, b := e.postForm("/a/message/new", form)
	if code != http.StatusOK {
		e.t.Fatalf("post %q: %d %s", body, code, b)
	}
	return decodeMsg(e.t, b)
}

// publish stores a message directly through the broker (fast set-up).
func (e *testEnv) publish(name, body string) *wall.Message {
	e.t.Helper()
	if name == "" {
		name = wall.DefaultWall
	}
	m, _, err := e.broker.Publish(e.t.Context(), wall.Post{Wall: name, ID: uuid.NewString(), Body: body})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// testMsg is a decoded message object.
type testMsg struct {
	ID     string `json:"id"`
	Seq    uint64 `json:"seq"`
	Cursor string `json:"cursor"`
	User   string `json:"user"`
	Time   int64  `json:"time"`
	Body   string `json:"body"`
	HTML   string `json:"html"`
}

// pollResp is a decoded long-poll answer; Messages is nil when the key is
// absent (a timeout answer).
type pollResp struct {
	Messages *[]testMsg `json:"messages"`
	Cursor   *string    `json:"cursor"`
	Missed   uint64     `json:"missed"`
	Reset    bool       `json:"reset"`
}

func decodeMsg(t *testing.T, b []byte) testMsg {
	t.Helper()
	var m testMsg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding message %q: %v", b, err)
	}
	return m
}

func decodePoll(t *testing.T, b []byte) pollResp {
	t.Helper()
	var p pollResp
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("decoding poll answer %q: %v", b, err)
	}
	return p
}

// seqs lists the seqs of msgs.
func seqs(msgs []testMsg) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// seqRange returns from, from+1, ..., to.
func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var uuid4RE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitDone runs f in a goroutine and fails if it does not return within d.
func waitDone(t *testing.T, what string, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// goroutineBaseline returns the current goroutine count once it has stopped
// falling (goroutines of earlier work may still be exiting).
func goroutineBaseline() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// waitGoroutines fails unless the goroutine count comes back to base.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d, baseline %d; stacks:\n%s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pollPath is a way a long-poll reaches the server. The long-poll, legacy
// and XSRF tests run over every one of them, as tables.
type pollPath struct {
	name   string
	engine bool // served as main serves it: through Server.Listener
	repoll bool // on a keep-alive connection the engine already holds
}

var pollPaths = []pollPath{
	// A Server mounted as a plain handler: net/http reads every poll,
	// and one that has to wait waits in its handler.
	{name: "net-http"},
	// Main's server, a fresh connection: net/http reads the poll; one
	// that has to wait is taken over by the engine and parked there.
	{name: "engine-first", engine: true},
	// Main's server, a connection the engine already holds (its first
	// poll waited): the engine reads and admits the poll itself.
	{name: "engine-repoll", engine: true, repoll: true},
}

// env starts the environment path p needs.
func (p pollPath) env(t *testing.T, cfg Config, cacheSize int) *testEnv {
	t.Helper()
	if p.engine {
		return newMainEnv(t, cfg, cacheSize)
	}
	return newTestEnv(t, cfg, cacheSize)
}

// forEachPath runs f over every path, as parallel subtests.
func forEachPath(t *testing.T, f func(t *testing.T, p pollPath)) {
	for _, p := range pollPaths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			f(t, p)
		})
	}
}

// rawRequest is a request as bytes: Host, then headers ("Name: value"
// each), then, with a body, Content-Length (and a urlencoded Content-Type
// unless headers set one).
func rawRequest(method, target string, body string, headers ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: wall.test\r\n")
	hasType := false
	for _, h := range headers {
		b.WriteString(h + "\r\n")
		hasType = hasType || strings.HasPrefix(strings.ToLower(h), "content-type:")
	}
	if body != "" || method == http.MethodPost {
		if !hasType {
			b.WriteString("Content-Type: application/x-www-form-urlencoded\r\n")
		}
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// pollReq is a poll as a client sends it: a GET with args in the
// query, or a POST with args as a urlencoded form plus the test XSRF
// cookie and field (unless args has _xsrf).
func pollReq(method string, args url.Values, headers ...string) string {
	if method == http.MethodGet {
		target := "/a/message/updates"
		if len(args) > 0 {
			target += "?" + args.Encode()
		}
		return rawRequest(method, target, "", headers...)
	}
	form := url.Values{"_xsrf": {testXSRF}}
	for k, v := range args {
		form[k] = v
	}
	headers = append([]string{"Cookie: _xsrf=" + testXSRF}, headers...)
	return rawRequest(method, "/a/message/updates", form.Encode(), headers...)
}

// dial connects a wireConn to the server.
func (e *testEnv) dial() *wireConn {
	e.t.Helper()
	return dialWire(e.t, e.addr)
}

// statsOf returns the count of wc's polls that net/http handed to the
// server.
func (e *testEnv) statsOf(wc *wireConn) *pollStats { return e.statsAt(wc.c.LocalAddr().String()) }

// statsAt returns the count of polls that net/http handed to the server
// from the client address addr.
func (e *testEnv) statsAt(addr string) *pollStats {
	v, _ := e.httpPolls.LoadOrStore(addr, new(pollStats))
	return v.(*pollStats)
}

// pollTotals sums the polls net/http handed to the server, and those that
// returned, over every connection.
func (e *testEnv) pollTotals() (started, done int64) {
	e.httpPolls.Range(func(_, v any) bool {
		started += v.(*pollStats).started.Load()
		done += v.(*pollStats).done.Load()
		return true
	})
	return started, done
}

// pollConn returns a connection to poll on over path p: a new one, which
// the engine holds first on the re-poll path.
func (e *testEnv) pollConn(p pollPath) *wireConn {
	e.t.Helper()
	wc := e.dial()
	if p.repoll {
		e.hold(wc)
	}
	return wc
}

// hold makes the engine hold every connection of wcs: on each, a GET poll
// of the wall "hold" that has to wait, which net/http hands over to the
// engine (its handler returns without an answer), then is answered. The
// engine reads the connections' next requests itself.
func (e *testEnv) hold(wcs ...*wireConn) {
	e.t.Helper()
	if !e.engine {
		e.t.Fatal("hold: no engine without a Listener")
	}
	cursor := "0"
	if w := e.hub.Lookup("hold"); w != nil {
		cursor = strconv.FormatUint(w.Last(), 10)
	}
	req := pollReq(http.MethodGet, url.Values{"wall": {"hold"}, "cursor": {cursor}})
	for _, wc := range wcs {
		st := e.statsOf(wc)
		n := st.started.Load()
		wc.send(req)
		waitFor(e.t, "the engine to take over a poll", 5*time.Second, func() bool {
			return st.started.Load() == n+1 && st.done.Load() == n+1
		})
	}
	e.publish("hold", "wake")
	for _, wc := range wcs {
		// A short PollTimeout may answer first: held all the same.
		if r := wc.response(5 * time.Second); r.Status != http.StatusOK || r.Closes() {
			e.t.Fatalf("hold: %v", r)
		}
	}
}

// pollCall is one poll sent over a path, its answer pending.
type pollCall struct {
	e    *testEnv
	p    pollPath
	wc   *wireConn
	mark int64 // wc's polls through net/http before this one
	ch   <-chan wireResult
}

// startPoll sends req over path p on a connection of its own.
func (e *testEnv) startPoll(p pollPath, req string) *pollCall {
	e.t.Helper()
	return e.startPollOn(p, e.pollConn(p), req)
}

// startPollOn sends req on wc, a connection of path p.
func (e *testEnv) startPollOn(p pollPath, wc *wireConn, req string) *pollCall {
	e.t.Helper()
	c := &pollCall{e: e, p: p, wc: wc, mark: e.statsOf(wc).started.Load()}
	wc.send(req)
	c.ch = wc.readAsync(20 * time.Second)
	return c
}

// waiting waits until the poll waits where its path has it wait (parked)
// and checks that it is not answered meanwhile.
func (c *pollCall) waiting() {
	c.e.t.Helper()
	c.parked()
	notAnswered(c.e.t, 100*time.Millisecond, c)
}

// parked waits until the poll waits where its path has it wait: in its
// handler (net/http), or in the engine after its handler returned without
// an answer (engine first poll). Nothing outside the engine tells when it
// has read a re-poll: it does so as the bytes arrive, which notAnswered's
// window leaves time for (and a re-poll read after the message it waits
// for is answered the same).
func (c *pollCall) parked() {
	c.e.t.Helper()
	st := c.e.statsOf(c.wc)
	switch {
	case !c.p.engine:
		waitFor(c.e.t, "the poll to wait in its handler", 5*time.Second, func() bool {
			return st.started.Load() == c.mark+1 && st.done.Load() == c.mark
		})
	case !c.p.repoll:
		waitFor(c.e.t, "the engine to take over the poll", 5*time.Second, func() bool {
			return st.started.Load() == c.mark+1 && st.done.Load() == c.mark+1
		})
	}
}

// notAnswered checks that none of calls is answered within d.
func notAnswered(t *testing.T, d time.Duration, calls ...*pollCall) {
	t.Helper()
	deadline := time.After(d)
	for _, c := range calls {
		select {
		case r := <-c.ch:
			t.Fatalf("poll answered although nothing qualifies: %v %v", r.resp, r.err)
		case <-deadline:
			return
		}
	}
	<-deadline
}

// answer waits for the poll's answer and checks that it took its path:
// net/http handed a poll on a fresh connection to the server once; a
// re-poll answered 200 was read and admitted by the engine, not net/http
// (a refused one may be handed back to net/http to answer).
func (c *pollCall) answer() *wireResponse {
	c.e.t.Helper()
	var r wireResult
	select {
	case r = <-c.ch:
	case <-time.After(10 * time.Second):
		c.e.t.Fatal("poll not answered within 10s")
	}
	if r.err != nil {
		c.e.t.Fatalf("poll: %v", r.err)
	}
	n := c.e.statsOf(c.wc).started.Load()
	switch {
	case !c.p.repoll && n != c.mark+1:
		c.e.t.Errorf("%s: net/http handed the server %d polls, want 1", c.p.name, n-c.mark)
	case c.p.repoll && r.resp.Status == http.StatusOK && n != c.mark:
		c.e.t.Errorf("re-poll answered 200 went through net/http")
	}
	return r.resp
}

// pollOver sends req over path p and returns its answer, which must come
// at once.
func (e *testEnv) pollOver(p pollPath, req string) *wireResponse {
	e.t.Helper()
	return e.startPoll(p, req).answer()
}

// wantMessages decodes a 200 poll answer that must carry messages, and
// checks its framing and that its cursor is the last message's.
func wantMessages(t *testing.T, r *wireResponse) pollResp {
	t.Helper()
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json; charset=UTF-8" {
		t.Fatalf("answer %v", r)
	}
	if bytes.Contains(r.Body, []byte(`"messages": []`)) {
		t.Fatalf("empty messages list: %s", r.Body)
	}
	p := decodePoll(t, r.Body)
	if p.Messages == nil || len(*p.Messages) == 0 {
		t.Fatalf("no messages in %s", r.Body)
	}
	last := (*p.Messages)[len(*p.Messages)-1]
	if p.Cursor == nil || *p.Cursor != cursorOf(last) {
		t.Errorf("cursor %v, want the last message's %q", p.Cursor, cursorOf(last))
	}
	return p
}

// cursorOf is the cursor a poll answer gives after m: the message's own,
// "<seq>.<epoch>".
func cursorOf(m testMsg) string {
	if !strings.HasPrefix(m.Cursor, strconv.FormatUint(m.Seq, 10)+".") {
		return "<no cursor of seq " + strconv.FormatUint(m.Seq, 10) + " in the message>"
	}
	return m.Cursor
}

// wantError checks a refusal: status code and {"error": msg} (any message
// if msg is empty).
func wantError(t *testing.T, r *wireResponse, code int, msg string) {
	t.Helper()
	var got struct {
		Error *string `json:"error"`
	}
	if r.Status != code || json.Unmarshal(r.Body, &got) != nil || got.Error == nil || (msg != "" && *got.Error != msg) {
		t.Errorf("answer %v, want %d %q", r, code, msg)
	}
	if code == http.StatusUnauthorized && r.Header.Get("WWW-Authenticate") != `Bearer realm="wall"` {
		t.Errorf("401 without WWW-Authenticate: %v", r)
	}
}

// forEachPathMethod runs f over every path with GET and POST polls, as
// parallel subtests.
func forEachPathMethod(t *testing.T, f func(t *testing.T, p pollPath, method string)) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(method, func(t *testing.T) {
				t.Parallel()
				f(t, p, method)
			})
		}
	})
}
