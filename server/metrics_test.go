package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"wall/assets"
	"wall/views"
	"wall/wall"
)

// GET /metrics counts what happened: stored posts, open WebSockets, walls.
func TestMetrics(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	e.post("a", "one")
	e.post("b", "two")
	e.mustDialWS("/ws?wall=a", "a", 1)
	e.openSSE("/sse?wall=b")
	// The wall has its subscriber before the handshake is answered; the
	// connection is counted just after.
	var code int
	var body []byte
	waitFor(t, "the WebSocket counted", 5*time.Second, func() bool {
		code, body = e.get("/metrics")
		return code != http.StatusOK || strings.Contains(string(body), "\nwall_websocket_connections 1\n") &&
			strings.Contains(string(body), "\nwall_sse_connections 1\n")
	})
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{
		"\nwall_posts_total 2\n", "\nwall_post_failures_total 0\n", "\nwall_websocket_connections 1\n",
		"\nwall_walls 2\n", "# TYPE wall_posts_total counter\n", "\nwall_websocket_slow_disconnects_total 0\n",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// unavailableBroker refuses every post, as the Redis broker does while
// Redis is away.
type unavailableBroker struct{ *wall.MemoryBroker }

func (unavailableBroker) Publish(context.Context, wall.Post) (*wall.Message, bool, error) {
	return nil, false, wall.ErrUnavailable
}

// A post the store refuses is a 503 with a clear message, stores nothing,
// and is counted.
func TestPostStoreUnavailable(t *testing.T) {
	hub := wall.NewHub(10)
	b := unavailableBroker{wall.NewMemoryBroker(hub)}
	srv, err := New(Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), hub, b, views.FS, assets.FS)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Wait()
	defer hub.Close()
	req := httptest.NewRequest(http.MethodPost, "/a/message/new", strings.NewReader(url.Values{"body": {"hi"}, "_xsrf": {"abc"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "_xsrf", Value: "abc"})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "unavailable") {
		t.Fatalf("post with the store away: %d %s", rec.Code, rec.Body)
	}
	if w := hub.Lookup(wall.DefaultWall); w != nil && w.Last() != 0 {
		t.Fatal("a refused post was stored")
	}
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "\nwall_post_failures_total 1\n") {
		t.Fatalf("failure not counted:\n%s", rec.Body)
	}
}
