package server

import (
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"wall/server/internal/longpoll"
	"wall/server/internal/outbound"
)

// Metrics are kept with the Prometheus client library, on a registry the
// Server owns (Config.Registry, or one of its own; never the library's
// global one): the Go runtime and process collectors, and the families
// below. Counts that something else keeps already (connections, walls,
// disconnect reasons) are read when scraped, so the hot paths only pay
// for the histograms, and the delivery lag is sampled (outbound.Options.Lag).
// No label names a wall: their number is unbounded, and private walls
// name their owners.

// Histogram buckets, in seconds.
var (
	publishBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// A message's time has millisecond resolution: the lag does too.
	lagBuckets   = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	redisBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
)

// metrics are the instruments the handlers update.
type metrics struct {
	reg          *prometheus.Registry
	posts        prometheus.Counter   // wall_posts_total
	postFailures prometheus.Counter   // wall_post_failures_total
	publish      prometheus.Histogram // wall_publish_duration_seconds
	lag          *prometheus.HistogramVec
	refusals     [numRefusals]prometheus.Counter // wall_refusals_total, by reason
}

// newMetrics registers the server's families on reg (a new registry if
// nil) and returns them.
func (s *Server) newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{reg: reg}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.posts = prometheus.NewCounter(prometheus.CounterOpts{Name: "wall_posts_total",
		Help: "Messages stored through this instance, every entry path."})
	m.postFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "wall_post_failures_total",
		Help: "Posts refused because the message store was unavailable or timed out, or the instance held too many walls."})
	m.publish = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wall_publish_duration_seconds",
		Help:    "Time from a post entering the store step (admitted, body cleaned) to stored and applied on this instance, every entry path.",
		Buckets: publishBuckets})
	m.lag = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wall_delivery_lag_seconds",
		Help:    "Time from a message stored (its server time, ms resolution) to written to a subscriber's socket, by transport; sampled, one write in 16 per connection.",
		Buckets: lagBuckets}, []string{"transport"})
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wall_refusals_total",
		Help: "Requests, handshakes and WebSocket frame posts refused, by reason."}, []string{"reason"})
	for r := range refusal(numRefusals) {
		m.refusals[r] = refusals.WithLabelValues(r.String())
	}
	f(m.posts)
	f(m.postFailures)
	f(m.publish)
	f(m.lag)
	f(refusals)

	gauge := func(name, help string, labels prometheus.Labels, v func() float64) {
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, v))
	}
	counter := func(name, help string, v func() float64) {
		f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, v))
	}
	gauge("wall_walls", "Walls this instance holds.", nil, func() float64 { return float64(s.hub.Len()) })
	gauge("wall_cache_bytes", "Bytes the walls' caches hold, as the cache budget counts them (-cache-bytes).", nil,
		func() float64 { return float64(s.hub.CacheStats().Bytes) })
	gauge("wall_cache_budget_bytes", "The cache budget, -cache-bytes; 0 for none.", nil,
		func() float64 { return float64(s.hub.CacheStats().Budget) })
	counter("wall_cache_evicted_walls_total", "Idle walls evicted with their caches to keep within the cache budget.",
		func() float64 { return float64(s.hub.CacheStats().Evicted) })
	counter("wall_cache_trimmed_messages_total", "Messages dropped from caches in use to keep within the cache budget (the walls in use hold more than it).",
		func() float64 { return float64(s.hub.CacheStats().Trimmed) })
	for _, t := range []string{wsTransport, sseTransport, longpoll.Transport} {
		gauge("wall_connections", "Open streaming connections, and keep-alive connections held by the long-poll engine (waiting polls and idle), by transport.",
			prometheus.Labels{"transport": t}, func() float64 { return float64(s.streams.Count(t)) })
	}
	gauge("wall_longpoll_waiting", "Long-polls waiting in the engine's reactor for a message.", nil,
		func() float64 { return float64(s.engine.Stats().Waiting) })
	gauge("wall_draining", "1 once the instance has begun to drain (SIGTERM): /readyz answers 503.", nil, func() float64 {
		if s.draining() {
			return 1
		}
		return 0
	})
	counter("wall_longpoll_worker_answers_total", "Long-polls answered by a flusher worker's non-blocking write.",
		func() float64 { return float64(s.engine.Stats().WorkerAnswers) })
	counter("wall_longpoll_worker_handoffs_total", "Worker answers the socket did not take whole; a goroutine wrote the rest.",
		func() float64 { return float64(s.engine.Stats().WorkerHandoffs) })
	counter("wall_websocket_slow_disconnects_total", "WebSocket connections cut off for falling too far behind (also in wall_stream_disconnects_total).",
		func() float64 { return float64(s.wsEnded.Load(outbound.SlowReader)) })
	f(disconnects{{wsTransport, &s.wsEnded}, {sseTransport, &s.sse.ended}})
	return m
}

// lagOf returns the delivery lag histogram of a transport.
func (m *metrics) lagOf(transport string) outbound.Observer { return m.lag.WithLabelValues(transport) }

// handleMetrics serves GET /metrics in the Prometheus exposition format.
// The bundled nginx.conf keeps it off the public side: scrape each
// instance directly.
func (s *Server) metricsHandler() echo.HandlerFunc {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	return echo.WrapHandler(h)
}

// disconnectsDesc describes wall_stream_disconnects_total.
var disconnectsDesc = prometheus.NewDesc("wall_stream_disconnects_total",
	"Streaming connections ended, by transport and reason.", []string{"transport", "reason"}, nil)

// disconnects collects the sessions' end reasons (outbound.Counters)
// when scraped.
type disconnects []struct {
	transport string
	c         *outbound.Counters
}

func (d disconnects) Describe(ch chan<- *prometheus.Desc) { ch <- disconnectsDesc }

func (d disconnects) Collect(ch chan<- prometheus.Metric) {
	for _, t := range d {
		t.c.Each(func(r outbound.Reason, n int64) {
			ch <- prometheus.MustNewConstMetric(disconnectsDesc, prometheus.CounterValue, float64(n), t.transport, r.String())
		})
	}
}

// NewRedisMetrics registers wall_redis_command_duration_seconds on reg and
// returns the function that observes it, for the Redis broker's
// ObserveRedis. Its op label is the broker's fixed set of calls.
func NewRedisMetrics(reg prometheus.Registerer) func(op string, d time.Duration) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wall_redis_command_duration_seconds",
		Help:    "Redis calls made by the broker, by command (fcall: by function; pipeline: the periodic check), including failures.",
		Buckets: redisBuckets}, []string{"op"})
	reg.MustRegister(h)
	return func(op string, d time.Duration) { h.WithLabelValues(op).Observe(d.Seconds()) }
}
