// Command wall serves a real-time message wall: a bounded cache of recent
// messages per named wall, pushed to browsers over WebSocket, to legacy
// clients of Tornado's chat demo by long-poll, and kept in sync across
// instances by Redis.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"wall/assets"
	"wall/server"
	"wall/views"
	"wall/wall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" { // wall token -sub mary ...: print a token
		if err := tokenCommand(os.Args[2:], os.Getenv, os.Stdout, os.Stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				os.Exit(0)
			}
			fmt.Fprintln(os.Stderr, "wall token:", err)
			os.Exit(2)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "wall:", err)
		os.Exit(1)
	}
}

// config is everything run reads from flags and the environment.
type config struct {
	addr            string
	cacheSize       int
	server          server.Config
	origins         string
	redisURL        string
	redisCluster    string
	redisWait       time.Duration
	shutdownTimeout time.Duration
	logLevel        string
	debugAddr       string
}

// parseFlags reads flags, each defaulting to its environment variable.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("wall", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	envInt := func(name string, def int) int {
		if n, err := strconv.Atoi(getenv(name)); err == nil {
			return n
		}
		return def
	}
	envDur := func(name string, def time.Duration) time.Duration {
		if d, err := time.ParseDuration(getenv(name)); err == nil {
			return d
		}
		return def
	}
	fs.StringVar(&cfg.addr, "addr", env("WALL_ADDR", ":7000"), "listen address (WALL_ADDR)")
	fs.IntVar(&cfg.cacheSize, "cache", envInt("WALL_CACHE_SIZE", 200), "messages cached per wall (WALL_CACHE_SIZE)")
	fs.IntVar(&cfg.server.BodyLimit, "body-limit", envInt("WALL_BODY_LIMIT", server.DefaultBodyLimit), "max message body in bytes; larger posts get 413 (WALL_BODY_LIMIT)")
	fs.DurationVar(&cfg.server.PollTimeout, "poll-timeout", envDur("WALL_POLL_TIMEOUT", server.DefaultPollTimeout), "longest a long-poll is held; keep it below the proxy's read timeout (WALL_POLL_TIMEOUT)")
	fs.StringVar(&cfg.origins, "origins", env("WALL_ALLOWED_ORIGINS", ""), "comma-separated origins of other sites allowed to use the wall (WebSocket handshakes, CORS for polls, streams and posts), or * (WALL_ALLOWED_ORIGINS)")
	fs.StringVar(&cfg.redisURL, "redis", env("REDIS_URL", ""), "Redis URL, e.g. redis://127.0.0.1:6379/0; empty runs a single instance with the in-process broker (REDIS_URL)")
	fs.DurationVar(&cfg.redisWait, "redis-wait", envDur("WALL_REDIS_WAIT", 0), "after each post, wait up to this long for a replica to have it (WAIT 1) before answering, so an acknowledged post survives a failover; 0 does not wait (WALL_REDIS_WAIT)")
	fs.StringVar(&cfg.redisCluster, "redis-cluster", env("WALL_REDIS_CLUSTER", ""), "Redis Cluster seed nodes, host:port,host:port,... (or a redis:// cluster URL with ?addr=...); instead of -redis (WALL_REDIS_CLUSTER)")
	fs.IntVar(&cfg.server.MaxWalls, "max-walls", envInt("WALL_MAX_WALLS", server.DefaultMaxWalls), "walls one instance holds before posts to new walls get 503; -1 for no limit (WALL_MAX_WALLS)")
	fs.StringVar(&cfg.server.PublishToken, "publish-token", env("WALL_PUBLISH_TOKEN", ""), "bearer token for POST /api/publish; empty disables it (WALL_PUBLISH_TOKEN)")
	var secret, anonymous, private string
	fs.StringVar(&secret, "token-secret", env("WALL_TOKEN_SECRET", ""), "HS256 secret of client tokens (JWT), at least 32 bytes; prefer the variable, which ps does not show; empty: no tokens, every client anonymous (WALL_TOKEN_SECRET)")
	fs.StringVar(&anonymous, "anonymous", env("WALL_ANONYMOUS", "post"), "what clients without a token may do on public walls: post, read or none (page only) (WALL_ANONYMOUS)")
	fs.StringVar(&private, "private-walls", env("WALL_PRIVATE_WALLS", ""), "comma-separated private wall names or prefix* patterns, reached only by tokens whose walls claim matches; user:, group: and session: walls are always private (WALL_PRIVATE_WALLS)")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", envDur("WALL_SHUTDOWN_TIMEOUT", 10*time.Second), "longest graceful shutdown (WALL_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&cfg.logLevel, "log-level", env("WALL_LOG_LEVEL", "info"), "debug, info, warn or error (WALL_LOG_LEVEL)")
	fs.StringVar(&cfg.debugAddr, "debug-addr", env("WALL_DEBUG_ADDR", ""), "serve /debug/pprof/ on this address, e.g. 127.0.0.1:6060; keep it private (WALL_DEBUG_ADDR)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.cacheSize < 1 {
		return cfg, fmt.Errorf("-cache must be at least 1")
	}
	mode, err := server.ParseAnonymous(anonymous)
	if err != nil {
		return cfg, fmt.Errorf("-anonymous: %w", err)
	}
	id := &cfg.server.Identity
	id.Secret, id.Anonymous, id.PrivateWalls = []byte(secret), mode, splitList(private)
	if err := id.Validate(); err != nil {
		return cfg, fmt.Errorf("-token-secret, -anonymous, -private-walls: %w", err)
	}
	for _, o := range strings.Split(cfg.origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.server.AllowedOrigins = append(cfg.server.AllowedOrigins, o)
		}
	}
	return cfg, nil
}

// run serves until ctx is done (or a part fails, see serve), then shuts
// down gracefully. If ready is not nil, the bound address is sent on it
// once the server accepts connections (tests use it with -addr 127.0.0.1:0).
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready chan<- string) error {
	cfg, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	// Bind first: a taken port is reported before anything starts.
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	var dln net.Listener
	if cfg.debugAddr != "" {
		if dln, err = net.Listen("tcp", cfg.debugAddr); err != nil {
			return fmt.Errorf("-debug-addr: %w", err)
		}
		defer dln.Close()
	}

	hub := wall.NewHub(cfg.cacheSize)
	defer hub.Close() // ends the server's goroutines on every return path
	broker, closeBroker, err := newBroker(cfg, hub, log)
	if err != nil {
		return err
	}
	defer closeBroker()
	srv, err := server.New(cfg.server, log, hub, broker, views.FS, assets.FS)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, log, hub, broker, srv, ln, dln, ready)
}

// serve runs the broker and the HTTP servers on ln (and dln, if not nil)
// until ctx is done or one of them fails, then shuts down gracefully: the
// hub answers pending polls and closes WebSockets, the servers stop, and
// the broker stops last. It returns the errors of the shutdown and of
// every part, so a part that failed or panicked makes main exit non-zero.
func serve(ctx context.Context, cfg config, log *slog.Logger, hub *wall.Hub, broker wall.Broker, srv *server.Server,
	ln, dln net.Listener, ready chan<- string) error {
	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}

	// The broker runs on until the servers have stopped; failed is done
	// as soon as a part returns an error (or panics).
	brokerCtx, stopBroker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBroker()
	g, failed := errgroup.WithContext(context.Background())
	goPart(g, log, "broker", func() error { return broker.Run(brokerCtx) })
	var debugSrv *http.Server
	if dln != nil {
		debugSrv = &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second}
		goPart(g, log, "debug server", func() error {
			if err := debugSrv.Serve(dln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	goPart(g, log, "http server", func() error {
		if err := httpSrv.Serve(srv.Listener(ln)); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	log.Info("wall listening", "addr", ln.Addr().String(), "redis", cfg.redisURL != "", "redis_cluster", cfg.redisCluster != "",
		"cache", cfg.cacheSize, "tokens", len(cfg.server.Identity.Secret) > 0, "anonymous", cfg.server.Identity.Anonymous.String())
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-failed.Done():
		log.Error("shutting down: a part of the server failed (its error is returned)")
	}
	// A fresh context: ctx is already cancelled.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	// Answer pending polls and send WebSocket close frames, then stop
	// accepting and wait for active requests; hijacked WebSockets are not
	// tracked by Shutdown, so wait for them separately.
	hub.Close()
	err := httpSrv.Shutdown(sctx)
	if debugSrv != nil {
		debugSrv.Close()
	}
	wsDone := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				wsDone <- panicked(log, "websocket drain", v) // shut down without it
			}
		}()
		srv.Wait()
		wsDone <- nil
	}()
	select {
	case werr := <-wsDone:
		err = errors.Join(err, werr)
	case <-sctx.Done():
		httpSrv.Close()
		err = errors.Join(err, errors.New("websocket connections still open at shutdown deadline"))
	}
	stopBroker()
	return errors.Join(err, g.Wait())
}

// goPart runs f in g as one of the server's long-lived parts. A panic in f
// is logged at error with its stack and becomes the part's error, so it
// ends serve's wait like any failure: the server shuts down gracefully and
// main exits non-zero, instead of the process dying on a raw panic.
func goPart(g *errgroup.Group, log *slog.Logger, name string, f func() error) {
	g.Go(func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = panicked(log, name, v)
			}
		}()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// panicked logs v, recovered at the root of goroutine name, with the
// stack, and returns it as an error. Call it from the deferred function.
func panicked(log *slog.Logger, name string, v any) error {
	log.Error("goroutine panicked; shutting down", "goroutine", name, "panic", v, "stack", string(debug.Stack()))
	return fmt.Errorf("%s panicked: %v", name, v)
}

// pprofHandler serves the runtime profiles, on their own listener so the
// public side never exposes them.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
