package server

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	corsSite     = "https://site.example"
	corsStranger = "https://stranger.example"
)

// corsDo sends method path with headers (name, value pairs) through e's
// listener and returns the response with its body read.
func corsDo(t *testing.T, e *testEnv, method, path string, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func TestCORS(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{AllowedOrigins: []string{corsSite}}, 10)
	e.publish("c", "hello")
	preflight := func(origin string) *http.Response {
		res, _ := corsDo(t, e, http.MethodOptions, "/a/message/new", "",
			"Origin", origin, "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization")
		return res
	}

	// An allowed origin: echoed with credentials, preflight answered.
	res := preflight(corsSite)
	h := res.Header
	if res.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != corsSite ||
		h.Get("Access-Control-Allow-Credentials") != "true" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || h.Get("Vary") != "Origin" {
		t.Errorf("preflight from an allowed origin: %d %v", res.StatusCode, h)
	}
	for _, path := range []string{"/a/message/updates?wall=c&cursor=0", "/static/wall-client.js"} {
		res, body := corsDo(t, e, http.MethodGet, path, "", "Origin", corsSite)
		if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") == "" {
			t.Errorf("GET %s from an allowed origin: %d %v %.60s", path, res.StatusCode, res.Header, body)
		}
	}

	// Any other origin: no preflight, no reads, and says so in a way its
	// page can read; posts go on to the XSRF check, unreadable.
	res = preflight(corsStranger)
	if res.StatusCode != http.StatusForbidden || res.Header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight from a stranger: %d %v", res.StatusCode, res.Header)
	}
	for _, path := range []string{"/a/message/updates?wall=c&cursor=0", "/sse?wall=c"} {
		res, body := corsDo(t, e, http.MethodGet, path, "", "Origin", corsStranger)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "origin not allowed") ||
			res.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("GET %s from a stranger: %d %v %s", path, res.StatusCode, res.Header, body)
		}
	}
	res, body := corsDo(t, e, http.MethodPost, "/a/message/new", "body=x&wall=c", "Origin", corsStranger)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "_xsrf") || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("post from a stranger: %d %v %s", res.StatusCode, res.Header, body)
	}
	// The library itself is public.
	res, _ = corsDo(t, e, http.MethodGet, "/static/wall-client.js", "", "Origin", corsStranger)
	if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("library for a stranger: %d %v", res.StatusCode, res.Header)
	}

	// Same origin (the Origin names the Host): nothing added, nothing refused.
	res, _ = corsDo(t, e, http.MethodGet, "/a/message/updates?wall=c&cursor=0", "", "Origin", e.url)
	if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("same-origin poll: %d %v", res.StatusCode, res.Header)
	}
	// The page is not for other origins' scripts.
	res, _ = corsDo(t, e, http.MethodGet, "/", "", "Origin", corsSite)
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("page readable cross-origin: %v", res.Header)
	}
}

// With "*" any origin may read and post with a token, never with the
// reader's cookies.
func TestCORSWildcard(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{AllowedOrigins: []string{"*"}}, 10)
	e.publish("c", "hello")
	res, _ := corsDo(t, e, http.MethodGet, "/a/message/updates?wall=c&cursor=0", "", "Origin", corsStranger)
	if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != "*" ||
		res.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("poll with a wildcard: %d %v", res.StatusCode, res.Header)
	}
	res, _ = corsDo(t, e, http.MethodOptions, "/a/message/new", "", "Origin", corsStranger,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization")
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "*" ||
		res.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight with a wildcard: %d %v", res.StatusCode, res.Header)
	}
}

// Cross-origin reads that wait keep their headers: a poll stays in
// net/http rather than wait in the long-poll engine (which writes its own
// answers), and the event stream's hand-written head carries them.
func TestCORSWaitingReads(t *testing.T) {
	t.Parallel()
	e := newMainEnv(t, Config{AllowedOrigins: []string{corsSite}}, 10)
	m := e.publish("w", "first")

	type answer struct {
		res  *http.Response
		body string
	}
	got := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, e.url+"/a/message/updates?wall=w&cursor="+url.QueryEscape(m.Cursor().String()), nil)
		req.Header.Set("Origin", corsSite)
		res, err := e.client.Do(req)
		if err != nil {
			got <- answer{}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- answer{res, string(b)}
	}()
	time.Sleep(300 * time.Millisecond) // the poll waits
	e.publish("w", "second")
	select {
	case a := <-got:
		if a.res == nil || a.res.Header.Get("Access-Control-Allow-Origin") != corsSite || !strings.Contains(a.body, "second") {
			t.Errorf("waiting cross-origin poll answered without its headers: %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting poll was not answered")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/sse?wall=w", nil)
	req.Header.Set("Origin", corsSite)
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Access-Control-Allow-Origin") != corsSite || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Errorf("cross-origin event stream: %d %v", res.StatusCode, res.Header)
	}
}

// TestCORSOnEveryPollPath: a cross-origin poll gets its CORS headers on
// every path, a keep-alive connection the engine already holds included
// (behind nginx one upstream connection carries many origins' polls).
func TestCORSOnEveryPollPath(t *testing.T) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, Config{AllowedOrigins: []string{"https://app.example"}}, 10)
		e.post("main", "hello")
		wc := e.pollConn(p)
		wc.send(pollReq("GET", url.Values{"cursor": {"0"}}, "Origin: https://app.example"))
		r := wc.response(5 * time.Second)
		wantMessages(t, r)
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
			t.Errorf("Access-Control-Allow-Origin %q on %s: %v", got, p.name, r)
		}
	})
}
