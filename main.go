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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	hub.SetCacheBudget(cfg.cacheBytes)
	defer hub.Close() // ends the server's goroutines on every return path
	// The metrics registry: the server's own and the broker's Redis
	// timings, never the library's global one.
	reg := prometheus.NewRegistry()
	broker, storeReady, closeBroker, err := newBroker(cfg, hub, log, reg)
	if err != nil {
		return err
	}
	defer closeBroker()
	presence, closePresence, err := newPresence(cfg, ln.Addr().String())
	if err != nil {
		return err
	}
	defer closePresence() // after the server has removed this instance's report
	cfg.server.Presence = presence
	cfg.server.Registry, cfg.server.Ready = reg, storeReady
	srv, err := server.New(cfg.server, log, hub, broker, views.FS, assets.FS)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, log, hub, broker, srv, ln, dln, ready)
}

// serve runs the broker and the HTTP servers on ln (and dln, if not nil)
// until ctx is done or one of them fails, then shuts down gracefully (see
// shutdown) and the broker stops last. It returns the errors of the
// shutdown and of every part, so a part that failed or panicked makes
// main exit non-zero.
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
	log.Info("wall listening", "addr", ln.Addr().String(), "redis", cfg.redisURL != "", "redis_cluster", cfg.redisCluster != "", "cache", cfg.cacheSize, "cache_bytes", cfg.cacheBytes,
		"tokens", len(cfg.server.Identity.Secret) > 0, "anonymous", cfg.server.Identity.Anonymous.String(),
		"drain", cfg.drainSpan(), "post_rate", cfg.server.PostRate, "max_conns_per_client", cfg.server.MaxConnsPerClient)
	if cfg.drainSpan() < cfg.drainTime {
		log.Warn("-drain-time capped to fit in -shutdown-timeout", "drain_time", cfg.drainTime,
			"shutdown_timeout", cfg.shutdownTimeout, "drain", cfg.drainSpan())
	}
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
	err := shutdown(sctx, cfg.drainSpan(), log, hub, srv, httpSrv)
	if debugSrv != nil {
		debugSrv.Close()
	}
	stopBroker()
	return errors.Join(err, g.Wait())
}

// shutdown leaves gracefully, within ctx (-shutdown-timeout). The server
// drains: /readyz answers 503 at once, waiting polls are answered and
// their connections closed, and WebSockets and event streams are closed
// one by one over span, each told when to reconnect (server/drain.go).
// Meanwhile the HTTP server stops accepting at once (a balancer's next
// connection goes to another instance) and waits for the requests in
// flight. Then the hub closes, which tells whoever is left at once, and
// the hijacked connections, which http.Server does not track, are waited
// for. Past ctx's deadline, the rest is closed.
func shutdown(ctx context.Context, span time.Duration, log *slog.Logger, hub *wall.Hub, srv *server.Server, httpSrv *http.Server) error {
	start := time.Now()
	drained := srv.Drain(span)
	log.Info("draining", "span", span)
	err := httpSrv.Shutdown(ctx)
	select {
	case <-drained:
	case <-ctx.Done():
	}
	hub.Close()
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
	case <-ctx.Done():
		httpSrv.Close()
		err = errors.Join(err, errors.New("websocket connections still open at shutdown deadline"))
	}
	log.Info("shut down", "took", time.Since(start).Round(time.Millisecond))
	return err
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
