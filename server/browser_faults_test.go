package server

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"wall/assets"
	"wall/views"
	"wall/wall"
	"wall/wall/browsertest"
)

// The browser tests of broken networks and servers: the page must end up
// live on some transport within a bound, and show exactly the server's
// messages, each once, in order.

// awaitJS evaluates expr in tab and waits for the promise it returns.
func awaitJS[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitJS waits until expr is true in tab.
func waitJS(t *testing.T, tab context.Context, what, expr string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Poll[chromedp.Void](expr)); err != nil {
		status, _ := chromedp.Run(tab, chromedp.TextContent(chromedp.CSS("#status")))
		t.Fatalf("waiting for %s (status %q): %v", what, status, err)
	}
}

// shownIDs returns the ids of the messages the page shows, in order.
func shownIDs(t *testing.T, tab context.Context) []string {
	t.Helper()
	return browsertest.Eval[[]string](t, tab, `[...document.querySelectorAll("#inbox .list .message")].map((e) => e.id.slice(1))`)
}

// wallIDs returns the ids of the messages wall name holds, in order.
func wallIDs(hub *wall.Hub, name string) []string {
	var ids []string
	if w := hub.Lookup(name); w != nil {
		for _, m := range w.Messages() {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// waitShowsWall waits until the page shows exactly the messages of the
// wall, in order: nothing lost, nothing twice.
func waitShowsWall(t *testing.T, tab context.Context, hub *wall.Hub, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		want, got := wallIDs(hub, name), shownIDs(t, tab)
		if slices.Equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("page shows %d messages %v,\nwall holds %d %v", len(got), got, len(want), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watchStatus records every text the status element takes, to check that
// screen readers hear state changes only.
const watchStatus = `(() => {
	window.statusLog = [];
	const el = document.getElementById("status");
	new MutationObserver(() => statusLog.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
	return true;
})()`

// checkStatusLog fails if the status changed without the state changing
// (a countdown read out every second).
func checkStatusLog(t *testing.T, tab context.Context) {
	t.Helper()
	log := browsertest.Eval[[]string](t, tab, `statusLog`)
	for i, s := range log {
		if strings.ContainsAny(s, "0123456789") || i > 0 && log[i-1] == s {
			t.Errorf("status texts %q: the live region changed without a state change", log)
			return
		}
	}
	t.Logf("status texts: %q", log)
}

func TestBrowserHungHandshake(t *testing.T) {
	e := newBrowserEnv(t, Config{}, nil)
	p := newTCPProxy(t, e.ts.Listener.Addr().String())
	p.hangWS.Store(true)
	browser := newBrowser(t)

	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	start := time.Now()
	if err := chromedp.Do(tab, chromedp.Navigate(p.url()+"/w/hung")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, "live on an HTTP transport", `/^live \((SSE|long-poll)\)$/.test(document.getElementById("status").textContent)`)
	took := time.Since(start)
	status := browsertest.Eval[string](t, tab, `document.getElementById("status").textContent`)
	t.Logf("WebSocket handshake hung: %s after %v", status, took.Round(time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("live after %v, want within 15 s", took)
	}

	// The page's own post is shown (it used to be stored and never shown).
	text := "posted while WebSockets hang"
	postEnter(t, tab, text)
	waitMessage(t, tab, text)
	e.publish(t, "hung", "and one from elsewhere")
	waitShowsWall(t, tab, e.hub, "hung")
}

func TestBrowserBlackhole(t *testing.T) {
	for _, tc := range []struct{ name, query, status string }{
		{"websocket", "", "live (WebSocket)"},
		{"sse", "?transport=sse", "live (SSE)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Heartbeats every second: the page's client counts the server
			// as gone after 3 s of silence (data-dead-after).
			e := newBrowserEnv(t, Config{PingInterval: time.Second}, nil)
			p := newTCPProxy(t, e.ts.Listener.Addr().String())
			// Every connection is blackholed, idle pooled ones too: a new
			// request may first go out on one of those and hang until
			// the handshake bound.
			browser := browsertest.Start(t, time.Minute)
			tab := openTab(t, browser, p.url()+"/w/hole"+tc.query, tc.status)
			deadAfter := browsertest.Eval[int](t, tab, `Number(document.body.dataset.deadAfter)`)
			e.publish(t, "hole", "before the blackhole")
			waitShowsWall(t, tab, e.hub, "hole")
			browsertest.Eval[bool](t, tab, watchStatus)

			p.blackhole()
			cut := time.Now()
			for i := 1; i <= 3; i++ {
				e.publish(t, "hole", "sent into the blackhole "+string(rune('0'+i)))
			}
			waitJS(t, tab, "the dead connection noticed", `document.getElementById("status").dataset.state !== "live"`)
			noticed := time.Since(cut)
			t.Logf("blackholed %s noticed after %v (bound %d ms)", tc.name, noticed.Round(time.Millisecond), deadAfter)
			if noticed > time.Duration(deadAfter)*time.Millisecond+2*time.Second {
				t.Errorf("noticed after %v, bound %d ms", noticed, deadAfter)
			}

			// New connections get through: it comes back and catches up,
			// with nothing lost or shown twice.
			waitStatus(t, tab, tc.status)
			t.Logf("live again %v after the blackhole", time.Since(cut).Round(time.Millisecond))
			waitShowsWall(t, tab, e.hub, "hole")
			postEnter(t, tab, "after the blackhole")
			waitMessage(t, tab, "after the blackhole")
			waitShowsWall(t, tab, e.hub, "hole")
			checkStatusLog(t, tab)
		})
	}
}

// restartable is an in-memory server that can be stopped and started
// again on the same address, with a new hub: its walls' numbering starts
// over in a new epoch, as after a process restart.
type restartable struct {
	t    *testing.T
	addr string
	hub  *wall.Hub
	brk  *wall.MemoryBroker
	srv  *Server
	ts   *httptest.Server
}

// build makes a new server (not yet listening).
func (r *restartable) build() {
	r.hub = wall.NewHub(200)
	r.brk = wall.NewMemoryBroker(r.hub)
	srv, err := New(Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), r.hub, r.brk, views.FS, assets.FS)
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = srv
}

// listen serves the current server on r.addr (any free port the first
// time).
func (r *restartable) listen() {
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.ts = httptest.NewUnstartedServer(r.srv)
	r.ts.Listener.Close()
	r.ts.Listener = ln
	r.ts.Start()
}

// stop shuts the server down as main does.
func (r *restartable) stop() {
	r.hub.Close()
	r.ts.Close()
	r.srv.Wait()
}

func (r *restartable) publish(name, body string) {
	if _, _, err := r.brk.Publish(r.t.Context(), wall.Post{Wall: name, ID: uuid.NewString(), Body: body}); err != nil {
		r.t.Fatal(err)
	}
}

func TestBrowserRestart(t *testing.T) {
	r := &restartable{t: t}
	r.build()
	r.listen()
	t.Cleanup(func() { r.stop() })
	for _, s := range []string{"old 1", "old 2", "old 3"} {
		r.publish("main", s)
	}
	browser := newBrowser(t)
	tab := openTab(t, browser, "http://"+r.addr+"/", "live (WebSocket)")
	waitShowsWall(t, tab, r.hub, "main")
	browsertest.Eval[bool](t, tab, watchStatus)

	// The process restarts with nothing: posts reach the new one before
	// the page reconnects.
	r.stop()
	r.build()
	r.publish("main", "new 1")
	r.publish("main", "new 2")
	r.listen()

	waitStatus(t, tab, "live (WebSocket)")
	waitShowsWall(t, tab, r.hub, "main")
	marker := browsertest.Eval[string](t, tab, `(document.querySelector("#inbox .marker.reset") || {}).textContent || ""`)
	notice := browsertest.Eval[string](t, tab, `(() => { const n = document.getElementById("notice"); return n.hidden ? "" : n.textContent; })()`)
	if !strings.Contains(marker, "restarted") || !strings.Contains(notice, "restarted") {
		t.Errorf("no reset notice: marker %q, notice %q", marker, notice)
	}
	if old := messageCount(t, tab, "old 1"); old != 0 {
		t.Errorf("a message of the lost numbering is still shown")
	}
	checkStatusLog(t, tab)
	// The notice goes away by itself.
	waitJS(t, tab, "the notice to go away", `document.getElementById("notice").hidden`)
}

// lostAnswer stores the first form post it sees and then drops its
// connection without an answer, as a proxy or network failing at the
// wrong moment would.
type lostAnswer struct {
	posts atomic.Int32
	ids   chan string
}

func (l *lostAnswer) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/a/message/new" {
			next.ServeHTTP(w, r)
			return
		}
		if l.posts.Add(1) > 1 {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(httptest.NewRecorder(), r) // stored; the answer goes nowhere
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
	})
}

func TestBrowserLostAnswer(t *testing.T) {
	var lost lostAnswer
	e := newBrowserEnv(t, Config{}, lost.wrap)
	browser := newBrowser(t)
	// Long-poll only, so the post goes over HTTP.
	tab := openTab(t, browser, e.url+"/w/lost?transport=longpoll", "live (long-poll)")
	text := "its answer was lost"
	postEnter(t, tab, text)
	waitMessage(t, tab, text)
	waitShowsWall(t, tab, e.hub, "lost")
	if n := lost.posts.Load(); n < 2 {
		t.Errorf("%d posts: the lost answer was not retried", n)
	}
	if ids := wallIDs(e.hub, "lost"); len(ids) != 1 {
		t.Errorf("wall holds %d messages, want the post stored once", len(ids))
	}
	if n := browsertest.Eval[int](t, tab, `document.querySelectorAll("#inbox .outbox li").length`); n != 0 {
		t.Errorf("%d posts still shown as sending", n)
	}
}

// frameLost drops the server's writes on the first WebSocket that carries
// a frame from the client, then closes it: the post is stored, its
// acknowledgement never arrives.
type frameLost struct{ done atomic.Bool }

func (f *frameLost) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" || f.done.Load() {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&frameLostWriter{ResponseWriter: w, f: f}, r)
	})
}

type frameLostWriter struct {
	http.ResponseWriter
	f *frameLost
}

func (w *frameLostWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return c, rw, err
	}
	return &frameLostConn{Conn: c, f: w.f}, rw, nil
}

func (w *frameLostWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type frameLostConn struct {
	net.Conn
	f    *frameLost
	read atomic.Bool // a client frame went through
}

func (c *frameLostConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.read.CompareAndSwap(false, true) {
		c.f.done.Store(true)
		time.AfterFunc(300*time.Millisecond, func() { c.Conn.Close() })
	}
	return n, err
}

func (c *frameLostConn) Write(b []byte) (int, error) {
	if c.read.Load() {
		return len(b), nil // lost on the way
	}
	return c.Conn.Write(b)
}

func TestBrowserLostAck(t *testing.T) {
	var lost frameLost
	e := newBrowserEnv(t, Config{}, lost.wrap)
	browser := newBrowser(t)
	tab := openTab(t, browser, e.url+"/w/ack", "live (WebSocket)")
	text := "its acknowledgement was lost"
	postEnter(t, tab, text)
	waitMessage(t, tab, text)
	waitStatus(t, tab, "live (WebSocket)")
	waitShowsWall(t, tab, e.hub, "ack")
	if ids := wallIDs(e.hub, "ack"); len(ids) != 1 {
		t.Errorf("wall holds %d messages, want the post stored once", len(ids))
	}
}
