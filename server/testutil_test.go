package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strings"
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
// embedded views and assets), behind a real loopback listener.
type testEnv struct {
	t      *testing.T
	hub    *wall.Hub
	broker *wall.MemoryBroker
	srv    *Server
	ts     *httptest.Server
	client *http.Client
	// inflight counts requests inside the server's handler (a WebSocket
	// counts until its handler returns).
	inflight atomic.Int64
}

// testXSRF is a valid version-2 token used as both cookie and field by
// tests that are not about XSRF.
var testXSRF = admit.EncodeXSRF([]byte("0123456789abcdef"))

// newTestEnv starts a server with cfg and a cache of cacheSize messages per
// wall. Cleanup closes the hub first (polls answer, WebSockets close), then
// the listener, then waits for WebSocket handlers.
func newTestEnv(t *testing.T, cfg Config, cacheSize int) *testEnv {
	t.Helper()
	hub := wall.NewHub(cacheSize)
	broker := wall.NewMemoryBroker(hub)
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), hub, broker, views.FS, assets.FS)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}
	e := &testEnv{t: t, hub: hub, broker: broker, srv: srv,
		client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.inflight.Add(1)
		defer e.inflight.Add(-1)
		srv.ServeHTTP(w, r)
	}))
	e.ts = ts
	t.Cleanup(func() {
		hub.Close()
		tr.CloseIdleConnections()
		ts.Close()
		waitDone(t, "srv.Wait after cleanup", 10*time.Second, srv.Wait)
	})
	return e
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
	u, _ := url.Parse(e.ts.URL + path)
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
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
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
	m, err := e.broker.Publish(e.t.Context(), name, uuid.NewString(), body)
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
