package server

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/labstack/echo/v4"

	"wall/server/internal/longpoll"
	"wall/server/internal/outbound"
)

// metrics are the server's counters; gauges are read when scraped.
type metrics struct {
	posts        atomic.Int64 // messages stored, every entry path
	postFailures atomic.Int64 // posts the broker refused (Redis away, timeout)
}

// handleMetrics serves GET /metrics in the Prometheus text format. It is
// a handful of numbers, so it is written by hand rather than with a client
// library. The bundled nginx.conf keeps it off the public side: scrape
// each instance directly.
func (s *Server) handleMetrics(c echo.Context) error {
	var b strings.Builder
	write := func(name, kind, help string, v int64) {
		b.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + kind + "\n")
		b.WriteString(name + " " + strconv.FormatInt(v, 10) + "\n")
	}
	lp := s.engine.Stats()
	write("wall_walls", "gauge", "Walls this instance holds.", int64(s.hub.Len()))
	write("wall_websocket_connections", "gauge", "Open WebSocket connections.", int64(s.streams.Count(wsTransport)))
	write("wall_sse_connections", "gauge", "Open server-sent event streams.", int64(s.streams.Count(sseTransport)))
	write("wall_longpoll_engine_connections", "gauge", "Keep-alive connections held by the long-poll engine (parked polls and idle).", int64(s.streams.Count(longpoll.Transport)))
	write("wall_longpoll_worker_answers_total", "counter", "Long-polls answered by a flusher worker's non-blocking write.", lp.WorkerAnswers)
	write("wall_longpoll_worker_handoffs_total", "counter", "Worker answers the socket did not take whole; a goroutine wrote the rest.", lp.WorkerHandoffs)
	write("wall_posts_total", "counter", "Messages stored through this instance.", s.metrics.posts.Load())
	write("wall_post_failures_total", "counter", "Posts refused because the message store was unavailable or timed out.", s.metrics.postFailures.Load())
	write("wall_websocket_slow_disconnects_total", "counter", "WebSocket connections cut off for falling too far behind.", s.wsEnded.Load(outbound.SlowReader))
	b.WriteString("# HELP wall_stream_disconnects_total Streaming connections ended, by transport and reason.\n" +
		"# TYPE wall_stream_disconnects_total counter\n")
	s.wsEnded.Each(func(r outbound.Reason, n int64) {
		b.WriteString(`wall_stream_disconnects_total{transport="` + wsTransport + `",reason="` + r.String() + `"} ` +
			strconv.FormatInt(n, 10) + "\n")
	})
	s.sse.ended.Each(func(r outbound.Reason, n int64) {
		b.WriteString(`wall_stream_disconnects_total{transport="` + sseTransport + `",reason="` + r.String() + `"} ` +
			strconv.FormatInt(n, 10) + "\n")
	})
	return c.Blob(http.StatusOK, "text/plain; version=0.0.4; charset=utf-8", []byte(b.String()))
}
