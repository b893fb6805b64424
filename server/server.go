// Package server serves walls over HTTP: the page, the legacy long-poll and
// post endpoints of Tornado's chat demo, WebSocket subscriptions and the
// authenticated publish API.
package server

import (
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"wall/server/internal/admit"
	"wall/server/internal/identity"
	"wall/server/internal/longpoll"
	"wall/server/internal/netpoll"
	"wall/server/internal/outbound"
	"wall/wall"
	"wall/wall/presence"
)

// Config holds the server's tunables. Zero values take the defaults below.
type Config struct {
	BodyLimit      int           // max body bytes after decoding (413 above)
	PollTimeout    time.Duration // longest a long-poll is held
	AllowedOrigins []string      // extra origins allowed to open WebSockets ("*" for any)
	PublishToken   string        // bearer token for POST /api/publish; empty disables it
	SyncWait       time.Duration // longest a request waits for this instance to catch up with a cursor
	PingInterval   time.Duration // WebSocket ping period; a peer silent for 10/9 of it is cut off
	IdleTimeout    time.Duration // longest a keep-alive connection held by the long-poll engine waits for its next request
	BodyTimeout    time.Duration // longest a request body may take to arrive (net/http paths)
	WriteTimeout   time.Duration // longest an answer may take to be written, from when it is ready (net/http paths)

	// Identity is the tokens, anonymous mode and private walls
	// (internal/identity); the zero value has none: everyone may post.
	Identity identity.Config

	// Presence shares this instance's clients per wall with the others
	// through Redis (stats.go); nil counts this instance's only.
	Presence *presence.Store
	// AdminToken opens the admin page (admin.go); empty disables it.
	AdminToken string

	// Per-client limits (internal/admit, limits.go). A client is its
	// address, or the one a trusted proxy names. Zero values are no limit.
	PostRate          float64        // posts a second a client may sustain (form and WebSocket frame posts)
	PostBurst         int            // posts a client may make at once; default 1
	MaxConnsPerClient int            // WebSockets, event streams and waiting polls a client may hold at once
	TrustedProxies    []netip.Prefix // peers whose X-Real-IP / X-Forwarded-For are believed

	// Registry is where the server registers its metrics (metrics.go);
	// nil for a registry of its own. Never the library's global one.
	Registry *prometheus.Registry
	// Ready, if set, reports whether the message store is usable, for
	// /readyz: the Redis broker's Ready. Nil is always ready.
	Ready func(ctx context.Context) error

	testHookParked func() // tests: longpoll.Config.TestHookParked
}

// Defaults.
const (
	DefaultBodyLimit    = 16 << 10
	DefaultPollTimeout  = 45 * time.Second
	DefaultSyncWait     = 2 * time.Second
	DefaultPingInterval = 25 * time.Second
	DefaultIdleTimeout  = 2 * time.Minute // main's http.Server IdleTimeout
	DefaultBodyTimeout  = 10 * time.Second
	DefaultWriteTimeout = 30 * time.Second
)

func (c *Config) setDefaults() {
	if c.BodyLimit <= 0 {
		c.BodyLimit = DefaultBodyLimit
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.SyncWait <= 0 {
		c.SyncWait = DefaultSyncWait
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
}

// Server holds the dependencies of the handlers. Build it with New.
type Server struct {
	cfg    Config
	log    *slog.Logger
	hub    *wall.Hub
	broker wall.Broker
	echo   *echo.Echo
	pages  *pages
	admit  *admit.Admitter // every entry path's admission (admission.go)

	upgrader websocket.Upgrader
	// streams holds every connection kept outside net/http: WebSocket
	// sessions and the long-poll engine's connections. It counts them
	// per transport, pings them, shuts them down when the hub closes and
	// lets Wait wait for them.
	streams outbound.Registry[outbound.Member]
	wsOpts  *outbound.Options // what every WebSocket session shares
	// wsHeartbeatOpts: the same, for clients that asked for heartbeats
	wsHeartbeatOpts *outbound.Options
	wsEnded         outbound.Counters // WebSocket sessions ended, per reason
	sse             sseShared         // what every event stream shares (sseconn.go)
	flusher         *netpoll.Flusher  // writes to them
	keepalive       chan struct{}     // closed when the keepalive loop has ended

	engine  *longpoll.Engine // the long-poll engine (engine.go): enabled by Listener
	metrics *metrics
	stats   stats // post rate and the presence reporter (stats.go)

	// quit is closed when the instance begins to leave: Drain, or the hub
	// closing (drain.go). quitOnce closes it.
	quit     chan struct{}
	quitOnce sync.Once

	// Buffers lent only while bytes are in flight, never to an idle
	// connection: client frames being read.
	frameReaders sync.Pool // *bufio.Reader
}

// New builds a server over hub and broker. views holds the HTML templates and
// assets the static files (both embedded by main). The server's own
// goroutines (keepalive and shutdown, flusher workers, the engine's
// reactor) end when hub is closed and Wait has returned.
func New(cfg Config, log *slog.Logger, hub *wall.Hub, broker wall.Broker, views, assets fs.FS) (*Server, error) {
	cfg.setDefaults()
	s := &Server{cfg: cfg, log: log, hub: hub, broker: broker, quit: make(chan struct{})}
	s.frameReaders.New = newFrameReader
	p, err := newPages(views, assets)
	if err != nil {
		return nil, err
	}
	s.pages = p
	if err := cfg.Identity.Validate(); err != nil {
		return nil, err
	}
	s.admit = admit.New(admit.Config{PublishToken: cfg.PublishToken, Identity: cfg.Identity, Limits: admit.Limits{
		PostRate: cfg.PostRate, PostBurst: cfg.PostBurst, MaxConns: cfg.MaxConnsPerClient, TrustedProxies: cfg.TrustedProxies}})
	s.upgrader = s.newUpgrader()
	s.metrics = s.newMetrics(cfg.Registry)
	s.flusher = netpoll.NewFlusher(func(v any, stack []byte) {
		s.log.Error("flusher job panicked", "panic", v, "stack", string(stack))
	})
	s.wsOpts, s.wsHeartbeatOpts = s.wsOptions(false), s.wsOptions(true)
	s.sse.init(s)
	s.keepalive = make(chan struct{})
	go func() { // owned by the Server, ended by hub.Close
		defer close(s.keepalive)
		defer s.crashLogged("keepalive loop")
		s.streams.Run(hub.Done(), cfg.PingInterval) // pings, and paces a drain (drain.go)
		s.stopping()                                // polls see it before they are woken
		s.streams.Shutdown()                        // whoever is left, at once
	}()
	s.engine = s.newEngine()
	s.echo = s.routes(assets)
	s.stats.init(s.statsInterval())
	go s.runStats() // owned by the Server, ended by hub.Close
	return s, nil
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Wait blocks until every WebSocket connection and every connection held
// by the long-poll engine has ended. http.Server's Shutdown does not track
// hijacked connections, so main calls Wait after closing the hub, which
// ends the keepalive loop: it tells every WebSocket to send its close
// frame and every held poll to answer (idle ones close).
func (s *Server) Wait() {
	<-s.keepalive
	<-s.stats.done
	s.streams.Wait()
	s.engine.Close() // no connection is left in its reactor
	s.flusher.Close()
}

// crashLogged is deferred at the root of the keepalive loop, whose failure
// would leave connections unpinged and shutdown unannounced: a panic there
// is logged with its stack and crashes the process deliberately.
func (s *Server) crashLogged(what string) {
	if v := recover(); v != nil {
		s.log.Error(what+" panicked, crashing", "panic", v, "stack", string(debug.Stack()))
		panic(v)
	}
}

// pongWait is how long a WebSocket peer may stay silent: pings go out every
// PingInterval, so a live peer's pong always comes before it.
func (s *Server) pongWait() time.Duration { return s.cfg.PingInterval * 10 / 9 }
