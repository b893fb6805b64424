package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wall/views"
)

// /readyz is 200 while the store is ready, 503 with the reason while it is
// not (Config.Ready), and 503 from the first moment of a drain; /healthz
// stays 200 throughout.
func TestReadyz(t *testing.T) {
	var storeErr atomic.Pointer[error]
	e := newMainEnv(t, Config{Ready: func(context.Context) error {
		if p := storeErr.Load(); p != nil {
			return *p
		}
		return nil
	}}, 10)
	check := func(path string, want int, body string) {
		t.Helper()
		code, b := e.get(path)
		if code != want || !strings.Contains(string(b), body) {
			t.Fatalf("GET %s: %d %q, want %d %q", path, code, b, want, body)
		}
	}
	check("/readyz", 200, "ready")
	down := errors.New("redis unreachable: connection refused")
	storeErr.Store(&down)
	check("/readyz", 503, "redis unreachable")
	check("/healthz", 200, "ok")
	storeErr.Store(nil)
	check("/readyz", 200, "ready")
	e.srv.Drain(time.Second)
	check("/readyz", 503, "draining")
	check("/healthz", 200, "ok")
	wantMetric(t, scrape(t, e.srv), 1, "wall_draining")
}

// A drain answers the polls waiting (in the engine and in net/http) at
// once and closes their connections, refuses new streams, and closes the
// WebSockets (1012, each with its reconnect hint) and event streams (a
// retry: hint) spread over the span, while they still get messages until
// their turn.
func TestDrainClosesSpreadOver(t *testing.T) {
	const n, span = 120, 600 * time.Millisecond
	e := newMainEnv(t, Config{}, 10)
	// A poll waiting in the engine, and one waiting in net/http (HTTP/1.0
	// is never taken over).
	engine := dialWire(t, e.addr)
	engine.send(pollReq("GET", url.Values{"wall": {"d"}, "cursor": {"0"}}))
	legacy := dialWire(t, e.addr)
	legacy.send("GET /a/message/updates?wall=d&cursor=0 HTTP/1.0\r\nHost: x\r\n\r\n")
	type ended struct {
		at   time.Time
		code int
		hint int
		err  error
		msgs int
	}
	results := make(chan ended, n)
	var wg sync.WaitGroup
	for range n {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/ws?wall=d", nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			msgs := 0
			for {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, _, err := c.ReadMessage()
				if err == nil {
					msgs++
					continue
				}
				r := ended{at: time.Now(), err: err, msgs: msgs}
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					r.code = ce.Code
					var hint struct {
						ReconnectMS int `json:"reconnect_ms"`
					}
					if json.Unmarshal([]byte(ce.Text), &hint) == nil {
						r.hint = hint.ReconnectMS
					}
				}
				results <- r
				return
			}
		}()
	}
	stream := e.openSSE("/sse?wall=d")
	waitFor(t, "every connection held", 5*time.Second, func() bool { return e.srv.streams.Len() == n+2 })
	e.publish("d", "before") // answers both polls; re-poll below

	for _, wc := range []*wireConn{engine, legacy} {
		if r := wc.response(5 * time.Second); r.Status != 200 {
			t.Fatalf("poll: %v", r)
		}
	}
	epoch := e.hub.Lookup("d").Epoch()
	engine.send(pollReq("GET", url.Values{"wall": {"d"}, "cursor": {"1." + epoch}}))
	legacy = dialWire(t, e.addr)
	legacy.send("GET /a/message/updates?wall=d&cursor=1." + epoch + " HTTP/1.0\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // both wait again

	start := time.Now()
	drained := e.srv.Drain(span)
	for name, wc := range map[string]*wireConn{"engine": engine, "net/http": legacy} {
		r := wc.response(time.Second)
		if r.Status != 200 || !r.Closes() || strings.Contains(string(r.Body), `"messages"`) {
			t.Fatalf("%s poll at the drain: %v", name, r)
		}
	}
	if took := time.Since(start); took > span/3 {
		t.Fatalf("waiting polls answered %v into the drain", took)
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/ws?wall=d", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a WebSocket during the drain: %v %v", err, resp)
	}
	e.publish("d", "during") // reaches those not told yet
	select {
	case <-drained:
	case <-time.After(span + 2*time.Second):
		t.Fatal("the drain did not end")
	}
	wg.Wait()
	close(results)
	var at []time.Duration
	gotLive := 0
	for r := range results {
		if r.code != websocket.CloseServiceRestart || r.hint < 500 || r.hint >= 3000 {
			t.Fatalf("WebSocket ended with %v (hint %d ms), want 1012 with a hint in [500, 3000)", r.err, r.hint)
		}
		at = append(at, r.at.Sub(start))
		if r.msgs == 2 {
			gotLive++
		}
	}
	sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
	q := func(p float64) time.Duration { return at[int(p*float64(len(at)-1))].Round(time.Millisecond) }
	t.Logf("%d WebSockets closed over a %v drain: min %v, p25 %v, p50 %v, p75 %v, max %v; %d got the message posted mid-drain",
		len(at), span, q(0), q(.25), q(.5), q(.75), q(1), gotLive)
	if q(.25) < span/8 || q(.25) > span/2 || q(.75) < span/2 || q(.75) > span || q(1) > span+300*time.Millisecond {
		t.Fatalf("closes not spread over the span")
	}
	if gotLive == 0 {
		t.Fatal("no WebSocket still got messages during the drain")
	}
	// The event stream ends with its retry: hint.
	for {
		b, err := stream.read(2 * time.Second)
		if err != nil {
			t.Fatalf("event stream ended without its retry: hint: %v", err)
		}
		if b.Retry != "" && len(b.Comments) == 1 && b.Comments[0] == "server shutting down" {
			break
		}
	}
	e.hub.Close()
	waitDone(t, "srv.Wait after the drain", 5*time.Second, e.srv.Wait)
}

// Every routed answer carries the security headers, and the page needs
// nothing the policy forbids: no inline style or event handler, no script
// from another origin, and its one inline script, the import map, is the
// one the policy allows by hash (data blocks are never run).
func TestSecurityHeaders(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	var page string
	for _, path := range []string{"/", "/w/x", "/static/wall.js", "/a/message/updates?wall=bad!"} {
		resp, err := e.client.Get(e.base() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if path == "/" {
			page = string(b)
		}
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			!strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" ||
			h.Get("Referrer-Policy") != "same-origin" {
			t.Fatalf("%s: headers %v", path, h)
		}
	}
	csp := contentSecurityPolicy([]byte(e.srv.pages.importMap))
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`)
	for _, m := range scripts.FindAllStringSubmatch(page, -1) {
		attrs, body := m[1], m[2]
		switch {
		case strings.Contains(attrs, `type="application/json"`): // data, never run
		case strings.Contains(attrs, `type="importmap"`):
			sum := sha256.Sum256([]byte(body))
			if !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
				t.Errorf("the page's import map is not the one the policy allows: %s", body)
			}
		case !regexp.MustCompile(`\ssrc="/`).MatchString(attrs) || strings.TrimSpace(body) != "":
			t.Errorf("the page has %q: an inline or foreign script, which the policy blocks", m[0])
		}
	}
	inline := regexp.MustCompile(`(?i)<style|\son[a-z]+\s*=|\sstyle\s*=|=\s*"?\s*javascript:`)
	err := fsWalk(func(name string, b []byte) {
		if m := inline.Find(b); m != nil {
			t.Errorf("%s has %q, which the Content-Security-Policy blocks", name, m)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fsWalk calls f on every template of views.
func fsWalk(f func(name string, b []byte)) error {
	entries, err := views.FS.ReadDir(".")
	if err != nil {
		return err
	}
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".html") {
			b, err := views.FS.ReadFile(en.Name())
			if err != nil {
				return err
			}
			f(en.Name(), b)
		}
	}
	return nil
}

// The WebSocket origin check compares the scheme as well as the host: a
// page served over plain HTTP may not open the sockets of the HTTPS site.
// The scheme the client used is what a trusted proxy says it was.
func TestWSOriginScheme(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	host := strings.TrimPrefix(e.ts.URL, "http://")
	dial := func(origin string, hdr ...string) int {
		t.Helper()
		h := http.Header{"Origin": {origin}}
		for i := 0; i+1 < len(hdr); i += 2 {
			h.Set(hdr[i], hdr[i+1])
		}
		c, resp, err := e.dialWS("/ws", h)
		if err == nil {
			c.Close()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	if code := dial("http://" + host); code != 101 {
		t.Fatalf("same origin: %d", code)
	}
	if code := dial("https://" + host); code != 403 {
		t.Fatalf("https origin on a plain HTTP request: %d", code)
	}
	// X-Forwarded-Proto from a peer that is not a trusted proxy is ignored.
	if code := dial("https://"+host, "X-Forwarded-Proto", "https"); code != 403 {
		t.Fatalf("https origin, X-Forwarded-Proto from an untrusted peer: %d", code)
	}
	trusted := newTestEnv(t, Config{TrustedProxies: mustPrefixes(t, "127.0.0.0/8")}, 10)
	e = trusted
	host = strings.TrimPrefix(e.ts.URL, "http://")
	if code := dial("https://"+host, "X-Forwarded-Proto", "https"); code != 101 {
		t.Fatalf("https origin behind a trusted TLS proxy: %d", code)
	}
	if code := dial("http://"+host, "X-Forwarded-Proto", "https"); code != 403 {
		t.Fatalf("http origin behind a trusted TLS proxy: %d", code)
	}
	wantMetric(t, scrape(t, e.srv), 1, "wall_refusals_total", "reason", "forbidden")
}

func mustPrefixes(t *testing.T, list string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(list)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
