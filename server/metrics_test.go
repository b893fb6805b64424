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

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"wall/assets"
	"wall/views"
	"wall/wall"
)

// scrape reads /metrics through the server and parses it with the client
// library's text parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// metricValue returns the value of the sample of family name whose labels
// include labels (name, value pairs): a counter's or gauge's value, a
// histogram's count. ok is false if there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// wantMetric fails unless the sample is there with value want.
func wantMetric(t *testing.T, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	if v, ok := metricValue(fams, name, labels...); !ok || v != want {
		t.Errorf("%s%v = %v (present %v), want %v", name, labels, v, ok, want)
	}
}

// GET /metrics, parsed by the client library, has the runtime and process
// families and the server's, and they count what happened: stored posts
// and their latency, open connections per transport, walls, refusals by
// reason, and the delivery lag of a live message on each transport.
func TestMetrics(t *testing.T) {
	e := newMainEnv(t, Config{}, 10)
	e.post("a", "one")
	e.post("b", "two")
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/ws?wall=a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	e.subscribed("a", 1)
	sse := e.openSSE("/sse?wall=b")
	// The wall has its subscriber before the handshake is answered; the
	// connection is counted just after.
	waitFor(t, "the connections counted", 5*time.Second, func() bool {
		fams := scrape(t, e.srv)
		w, _ := metricValue(fams, "wall_connections", "transport", "websocket")
		s, _ := metricValue(fams, "wall_connections", "transport", "sse")
		return w == 1 && s == 1
	})
	// Refusals: a bad wall name (400), a post without XSRF (403).
	if code, _ := e.get("/a/message/updates?wall=bad!"); code != http.StatusBadRequest {
		t.Fatalf("bad wall: %d", code)
	}
	if code, _ := e.postForm("/a/message/new", url.Values{"body": {"x"}, "_xsrf": {"wrong"}}); code != http.StatusForbidden {
		t.Fatalf("post without XSRF: %d", code)
	}
	// A poll waiting in the engine, answered by a worker when a message
	// comes: its delivery lag is observed, as the sockets' are.
	wc := e.pollConn(pollPaths[1])
	call := e.startPollOn(pollPaths[1], wc, pollReq("GET", url.Values{"wall": {"a"}, "cursor": {"1." + e.hub.Lookup("a").Epoch()}}))
	call.parked()
	e.post("a", "live")
	wantMessages(t, call.answer())
	readWSMsg(t, ws)
	nextEvent := func() { // skipping keepalive comments
		t.Helper()
		for range 10 {
			if b := sse.next(5 * time.Second); b.Data != nil {
				return
			}
		}
		t.Fatal("no event on the stream")
	}
	e.post("b", "live")
	nextEvent()
	// A lag is observed once the write returns, which may be just after
	// the client has read the bytes.
	waitFor(t, "the delivery lags observed", 5*time.Second, func() bool {
		fams := scrape(t, e.srv)
		for _, tr := range []string{"websocket", "sse", "longpoll"} {
			if v, _ := metricValue(fams, "wall_delivery_lag_seconds", "transport", tr); v < 1 {
				return false
			}
		}
		return true
	})

	fams := scrape(t, e.srv)
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_open_fds",
		"process_resident_memory_bytes", "wall_stream_disconnects_total", "wall_longpoll_worker_answers_total"} {
		if fams[name] == nil {
			t.Errorf("no family %s", name)
		}
	}
	wantMetric(t, fams, 4, "wall_posts_total")
	wantMetric(t, fams, 0, "wall_post_failures_total")
	wantMetric(t, fams, 4, "wall_publish_duration_seconds")
	wantMetric(t, fams, 2, "wall_walls")
	wantMetric(t, fams, 1, "wall_connections", "transport", "websocket")
	wantMetric(t, fams, 1, "wall_connections", "transport", "sse")
	wantMetric(t, fams, 1, "wall_refusals_total", "reason", "bad_request")
	wantMetric(t, fams, 1, "wall_refusals_total", "reason", "forbidden")
	wantMetric(t, fams, 0, "wall_refusals_total", "reason", "rate_limited")
	wantMetric(t, fams, 0, "wall_draining")
	wantMetric(t, fams, 0, "wall_websocket_slow_disconnects_total")
	wantMetric(t, fams, 0, "wall_stream_disconnects_total", "transport", "websocket", "reason", "slow_reader")
	// The first live write of each connection is sampled.
	wantMetric(t, fams, 1, "wall_delivery_lag_seconds", "transport", "websocket")
	wantMetric(t, fams, 1, "wall_delivery_lag_seconds", "transport", "sse")
	wantMetric(t, fams, 1, "wall_delivery_lag_seconds", "transport", "longpoll")
	if n, _ := metricValue(fams, "wall_connections", "transport", "longpoll"); n < 1 {
		t.Errorf("the engine's connection not counted: %v", n)
	}

	// Disconnects are counted by transport and reason.
	ws.Close()
	waitFor(t, "the WebSocket's end counted", 5*time.Second, func() bool {
		v, _ := metricValue(scrape(t, e.srv), "wall_stream_disconnects_total", "transport", "websocket", "reason", "peer_closed")
		return v == 1
	})
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
	fams := scrape(t, srv)
	wantMetric(t, fams, 1, "wall_post_failures_total")
	wantMetric(t, fams, 1, "wall_refusals_total", "reason", "store_unavailable")
}
