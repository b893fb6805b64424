package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/uuid"

	"wall/assets"
	"wall/views"
	"wall/wall"
	"wall/wall/browsertest"
)

// The browser tests drive a real headless Chromium through chromedp against
// the server built exactly as main builds it, so the page, wall.js and the
// server's transports are tested together, as a person would use them.

// browserTimeout bounds each test as a whole.
const browserTimeout = 30 * time.Second

// browserEnv is a server built as main builds it (in-process broker),
// served by httptest behind an optional wrapper that injects faults, with
// its hub and broker at hand for setting up walls.
type browserEnv struct {
	hub    *wall.Hub
	broker *wall.MemoryBroker
	srv    *Server
	ts     *httptest.Server
	url    string
}

// newBrowserEnv starts a server with cfg and a 200-message cache behind
// wrap (which may be nil).
func newBrowserEnv(t *testing.T, cfg Config, wrap func(http.Handler) http.Handler) *browserEnv {
	t.Helper()
	hub := wall.NewHub(200)
	broker := wall.NewMemoryBroker(hub)
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), hub, broker, views.FS, assets.FS)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	// Cleanups run last-in first-out: the hub closes first so WebSockets
	// and polls end, then the listener, then the server's goroutines.
	t.Cleanup(srv.Wait)
	t.Cleanup(ts.Close)
	t.Cleanup(hub.Close)
	return &browserEnv{hub: hub, broker: broker, srv: srv, ts: ts, url: ts.URL}
}

// newBrowserServer starts the server as main builds it, behind wrap (which
// may be nil) to inject network faults.
func newBrowserServer(t *testing.T, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	return newBrowserEnv(t, Config{}, wrap).ts
}

// publish stores a message on wall name through the broker, as a post
// from anywhere would be.
func (e *browserEnv) publish(t *testing.T, name, body string) *wall.Message {
	t.Helper()
	m, _, err := e.broker.Publish(t.Context(), wall.Post{Wall: name, ID: uuid.NewString(), Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// newBrowser starts headless Chromium and returns the context of its first
// tab, bounded by browserTimeout.
func newBrowser(t *testing.T) context.Context { return browsertest.Start(t, browserTimeout) }

// openTab opens url in a new tab of the browser of parent and waits until
// the client reports status want.
func openTab(t *testing.T, parent context.Context, url, want string) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(parent)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	waitStatus(t, tab, want)
	return tab
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func waitStatus(t *testing.T, tab context.Context, want string) {
	t.Helper()
	expr := `document.getElementById("status").textContent === ` + jsString(want)
	if err := chromedp.Do(tab, chromedp.Poll[chromedp.Void](expr)); err != nil {
		status, _ := chromedp.Run(tab, chromedp.TextContent(chromedp.CSS("#status")))
		t.Fatalf("waiting for status %q (now %q): %v", want, status, err)
	}
}

// countExpr counts the inbox messages whose text is exactly text.
func countExpr(text string) string {
	return `[...document.querySelectorAll("#inbox .message")].filter((e) => e.textContent === ` +
		jsString(text) + `).length`
}

// waitMessage waits until text is shown in the tab's inbox.
func waitMessage(t *testing.T, tab context.Context, text string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Poll[chromedp.Void](countExpr(text)+` > 0`)); err != nil {
		t.Fatalf("waiting for message %q: %v", text, err)
	}
}

// messageCount returns how often text is shown in the tab's inbox.
func messageCount(t *testing.T, tab context.Context, text string) int {
	t.Helper()
	n, err := chromedp.Run(tab, chromedp.Evaluate[int](countExpr(text)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// postEnter types text into the form and presses Enter.
func postEnter(t *testing.T, tab context.Context, text string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS("#message"), text+kb.Enter)); err != nil {
		t.Fatalf("post %q: %v", text, err)
	}
}

// postClick types text into the form and clicks Post.
func postClick(t *testing.T, tab context.Context, text string) {
	t.Helper()
	if err := chromedp.Do(tab,
		chromedp.SendKeys(chromedp.CSS("#message"), text),
		chromedp.Click(chromedp.CSS(`#messageform button[type="submit"]`)),
	); err != nil {
		t.Fatalf("post %q: %v", text, err)
	}
}

// postRefused submits a body over the server's size limit and waits for
// the server's error to be shown next to the form, with the text kept in
// the input so nothing typed is lost.
func postRefused(t *testing.T, tab context.Context) {
	t.Helper()
	const submit = `(() => {
		document.getElementById("message").value = "x".repeat(20000);
		document.getElementById("messageform").requestSubmit();
		return true;
	})()`
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](submit)); err != nil {
		t.Fatal(err)
	}
	shown := `(() => { const e = document.getElementById("form-error"); return !e.hidden && e.textContent; })()`
	msg, err := chromedp.Run(tab, chromedp.Poll[string](shown))
	if err != nil {
		t.Fatalf("no error shown for an oversized post: %v", err)
	}
	t.Logf("oversized post refused: %q", msg)
	kept, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.getElementById("message").value.length`))
	if err != nil || kept != 20000 {
		t.Errorf("input after a refused post has %d characters (%v), want the 20000 typed", kept, err)
	}
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.getElementById("message").value = "", true`)); err != nil {
		t.Fatal(err)
	}
}

// assertOnce checks that each tab shows text exactly once. Call it after a
// later message has arrived in every tab: messages arrive in order, so a
// duplicate would already be there.
func assertOnce(t *testing.T, text string, tabs ...context.Context) {
	t.Helper()
	for i, tab := range tabs {
		if n := messageCount(t, tab, text); n != 1 {
			t.Errorf("tab %d shows %q %d times, want once", i+1, text, n)
		}
	}
}

func TestBrowserWebSocket(t *testing.T) {
	ts := newBrowserServer(t, nil)
	browser := newBrowser(t)
	tab1 := openTab(t, browser, ts.URL+"/", "live (WebSocket)")
	tab2 := openTab(t, browser, ts.URL+"/", "live (WebSocket)")

	// Markup in a body must come back as text, escaped by the server.
	first := `hello <b>from</b> tab 1 & "friends"`
	postEnter(t, tab1, first)
	waitMessage(t, tab2, first)
	waitMessage(t, tab1, first)

	second := "and back from tab 2 http://example.com/x"
	postEnter(t, tab2, second)
	waitMessage(t, tab1, second)
	waitMessage(t, tab2, second)
	assertOnce(t, first, tab1, tab2)
	assertOnce(t, second, tab1, tab2)

	// The URL was linkified and the input cleared after posting.
	href, err := chromedp.Run(tab1, chromedp.Evaluate[string](`document.querySelector("#inbox .message:last-child a").href`))
	if err != nil || href != "http://example.com/x" {
		t.Errorf("link href = %q, %v", href, err)
	}
	val, err := chromedp.Run(tab1, chromedp.Evaluate[string](`document.getElementById("message").value`))
	if err != nil || val != "" {
		t.Errorf("input after posting = %q, %v; want it cleared", val, err)
	}

	postRefused(t, tab1)

	// A reload renders both messages from the cache, once each, and
	// resumes live from them.
	tab3 := openTab(t, browser, ts.URL+"/", "live (WebSocket)")
	assertOnce(t, first, tab3)
	assertOnce(t, second, tab3)

	if os.Getenv("WALL_SCREENSHOT") != "" {
		png, err := chromedp.Run(tab3, chromedp.CaptureScreenshot())
		if err == nil {
			err = os.WriteFile(os.Getenv("WALL_SCREENSHOT"), png, 0o644)
		}
		if err != nil {
			t.Log("screenshot:", err)
		}
	}
}

// wsGate answers 503 to every WebSocket handshake and event stream while
// closed, as a proxy that passes neither would, so the client must fall
// back to long-poll.
type wsGate struct{ open atomic.Bool }

func (g *wsGate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.URL.Path == "/ws" || r.URL.Path == "/sse") && !g.open.Load() {
			http.Error(w, "no websockets here", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func TestBrowserLongPollFallback(t *testing.T) {
	var gate wsGate
	ts := newBrowserServer(t, gate.wrap)
	browser := newBrowser(t)
	// A named wall, so the wall argument travels on every path.
	url := ts.URL + "/w/fallback"
	tab1 := openTab(t, browser, url, "live (long-poll)")
	tab2 := openTab(t, browser, url, "live (long-poll)")

	first := "posted over HTTP, read by long-poll"
	postClick(t, tab1, first)
	waitMessage(t, tab2, first)
	waitMessage(t, tab1, first)

	second := "second, from tab 2"
	postEnter(t, tab2, second)
	waitMessage(t, tab1, second)
	waitMessage(t, tab2, second)
	assertOnce(t, first, tab1, tab2)
	assertOnce(t, second, tab1, tab2)

	postRefused(t, tab1)

	// Not on the default wall.
	main := openTab(t, browser, ts.URL+"/", "live (long-poll)")
	if n := messageCount(t, main, first); n != 0 {
		t.Errorf("default wall shows the named wall's message %d times", n)
	}
	transport, err := chromedp.Run(tab1, chromedp.Evaluate[string](`window.wallClient.transport`))
	if err != nil || transport != "longpoll" {
		t.Errorf("transport = %q, %v; want longpoll", transport, err)
	}

	// Once WebSockets get through again, the client's periodic retry
	// moves it back to a WebSocket, resuming from its cursor.
	gate.open.Store(true)
	waitStatus(t, tab1, "live (WebSocket)")
	third := "back on a WebSocket"
	postEnter(t, tab1, third)
	waitMessage(t, tab2, third)
	waitMessage(t, tab1, third)
	assertOnce(t, first, tab1, tab2)
	assertOnce(t, third, tab1, tab2)
}

func TestBrowserForcedLongPoll(t *testing.T) {
	ts := newBrowserServer(t, nil)
	browser := newBrowser(t)
	tab1 := openTab(t, browser, ts.URL+"/?transport=longpoll", "live (long-poll)")
	tab2 := openTab(t, browser, ts.URL+"/", "live (WebSocket)")

	text := "from a long-poll tab to a WebSocket tab"
	postEnter(t, tab1, text)
	waitMessage(t, tab2, text)
	reply := "and back"
	postEnter(t, tab2, reply)
	waitMessage(t, tab1, reply)
	assertOnce(t, text, tab1, tab2)
}

// partition cuts one tab off the server: while down, it closes that tab's
// WebSockets and answers 503 to its requests. The cut-off tab is the one that
// opened the page as "localhost" rather than "127.0.0.1": the Host header
// tells its requests apart, and each tab is still same-origin with its page.
type partition struct {
	host  string // Host prefix of the cut-off tab
	down  atomic.Bool
	mu    sync.Mutex
	conns []net.Conn // hijacked connections of the cut-off tab
}

func (p *partition) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Host, p.host) {
			next.ServeHTTP(w, r)
			return
		}
		if p.down.Load() {
			http.Error(w, "partitioned", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(&hijackRecorder{ResponseWriter: w, p: p}, r)
	})
}

// cut closes the marked tab's WebSockets abruptly (no close frame) and
// refuses its requests until heal.
func (p *partition) cut() {
	p.down.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *partition) heal() { p.down.Store(false) }

// hijackRecorder remembers the connections taken over by WebSockets.
type hijackRecorder struct {
	http.ResponseWriter
	p *partition
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err == nil {
		h.p.mu.Lock()
		h.p.conns = append(h.p.conns, c)
		h.p.mu.Unlock()
	}
	return c, rw, err
}

func (h *hijackRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func TestBrowserResumeAfterDisconnect(t *testing.T) {
	p := &partition{host: "localhost:"}
	ts := newBrowserServer(t, p.wrap)
	browser := newBrowser(t)
	tab1 := openTab(t, browser, ts.URL+"/", "live (WebSocket)")
	tab2 := openTab(t, browser, strings.Replace(ts.URL, "127.0.0.1", "localhost", 1)+"/", "live (WebSocket)")

	before := "before the cut"
	postEnter(t, tab1, before)
	waitMessage(t, tab2, before)

	p.cut()
	if err := chromedp.Do(tab2, chromedp.Poll[chromedp.Void](
		`document.getElementById("status").textContent === "reconnecting…"`)); err != nil {
		t.Fatalf("tab 2 did not notice the cut: %v", err)
	}
	during := "posted while tab 2 was cut off"
	postEnter(t, tab1, during)
	waitMessage(t, tab1, during)
	if n := messageCount(t, tab2, during); n != 0 {
		t.Fatalf("tab 2 shows %q while cut off", during)
	}

	// After the cut heals, tab 2 reconnects (WebSocket first) and resumes
	// from its cursor: the message it missed arrives, once.
	p.heal()
	waitMessage(t, tab2, during)
	waitStatus(t, tab2, "live (WebSocket)")
	after := "after the cut, from tab 2"
	postEnter(t, tab2, after)
	waitMessage(t, tab1, after)
	waitMessage(t, tab2, after)
	assertOnce(t, before, tab1, tab2)
	assertOnce(t, during, tab1, tab2)
	assertOnce(t, after, tab1, tab2)
}
