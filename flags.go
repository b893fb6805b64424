package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"wall/server"
)

// Defaults of the operations flags.
const (
	defaultShutdownTimeout = 15 * time.Second
	defaultDrainTime       = 10 * time.Second
	defaultPostRate        = 5
	defaultPostBurst       = 20
	// The bundled nginx runs on the same host; a proxy elsewhere is named
	// with -trusted-proxies.
	defaultTrustedProxies = "127.0.0.0/8,::1/128"
	// drainReserve is the part of -shutdown-timeout a drain leaves for the
	// last close handshakes (2 s each at most) and the broker to stop.
	drainReserve = 3 * time.Second
)

// config is everything run reads from flags and the environment.
type config struct {
	addr            string
	cacheSize       int
	cacheBytes      int64 // the hub's cache budget; 0 is none
	server          server.Config
	origins         string
	redisURL        string
	redisCluster    string
	redisWait       time.Duration
	shutdownTimeout time.Duration
	drainTime       time.Duration
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
	envFloat := func(name string, def float64) float64 {
		if f, err := strconv.ParseFloat(getenv(name), 64); err == nil {
			return f
		}
		return def
	}
	fs.StringVar(&cfg.addr, "addr", env("WALL_ADDR", ":7000"), "listen address (WALL_ADDR)")
	fs.IntVar(&cfg.cacheSize, "cache", envInt("WALL_CACHE_SIZE", 200), "messages cached per wall (WALL_CACHE_SIZE)")
	fs.IntVar(&cfg.server.BodyLimit, "body-limit", envInt("WALL_BODY_LIMIT", server.DefaultBodyLimit), "max message body in bytes; larger posts get 413 (WALL_BODY_LIMIT)")
	fs.DurationVar(&cfg.server.PollTimeout, "poll-timeout", envDur("WALL_POLL_TIMEOUT", server.DefaultPollTimeout), "longest a long-poll is held; keep it below the proxy's read timeout (WALL_POLL_TIMEOUT)")
	fs.StringVar(&cfg.origins, "origins", env("WALL_ALLOWED_ORIGINS", ""), "comma-separated origins of other sites allowed to use the wall (WebSocket handshakes, CORS for polls, streams and posts), or * (WALL_ALLOWED_ORIGINS)")
	fs.StringVar(&cfg.redisURL, "redis", env("REDIS_URL", ""), "Redis URL, e.g. redis://127.0.0.1:6379/0; empty runs a single instance with the in-process broker (REDIS_URL)")
	fs.StringVar(&cfg.redisCluster, "redis-cluster", env("WALL_REDIS_CLUSTER", ""), "Redis Cluster seed nodes, host:port,host:port,... (or a redis:// cluster URL with ?addr=...); instead of -redis (WALL_REDIS_CLUSTER)")
	fs.DurationVar(&cfg.redisWait, "redis-wait", envDur("WALL_REDIS_WAIT", 0), "after each post, wait up to this long for a replica to have it (WAIT 1) before answering, so an acknowledged post survives a failover; 0 does not wait (WALL_REDIS_WAIT)")
	var cacheBytes string
	fs.StringVar(&cacheBytes, "cache-bytes", env("WALL_CACHE_BYTES", "256MiB"), "memory the message caches of all walls may hold, e.g. 256MiB or 2GiB; past it idle walls are evicted, least recently used first; 0 for no limit (WALL_CACHE_BYTES)")
	fs.StringVar(&cfg.server.PublishToken, "publish-token", env("WALL_PUBLISH_TOKEN", ""), "bearer token for POST /api/publish; empty disables it; prefer the variable, which ps and /debug/pprof/cmdline do not show (WALL_PUBLISH_TOKEN)")
	fs.StringVar(&cfg.server.AdminToken, "admin-token", env("WALL_ADMIN_TOKEN", ""), "password of the admin page /admin (HTTP Basic, any user name) or its Bearer token; empty: the publish token; both empty disable the page; prefer the variable, which ps does not show (WALL_ADMIN_TOKEN)")
	var secret, anonymous, private string
	fs.StringVar(&secret, "token-secret", env("WALL_TOKEN_SECRET", ""), "HS256 secret of client tokens (JWT), at least 32 bytes; prefer the variable, which ps does not show; empty: no tokens, every client anonymous (WALL_TOKEN_SECRET)")
	fs.StringVar(&anonymous, "anonymous", env("WALL_ANONYMOUS", "post"), "what clients without a token may do on public walls: post, read or none (page only) (WALL_ANONYMOUS)")
	fs.StringVar(&private, "private-walls", env("WALL_PRIVATE_WALLS", ""), "comma-separated private wall names or prefix* patterns, reached only by tokens whose walls claim matches; user:, group: and session: walls are always private (WALL_PRIVATE_WALLS)")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", envDur("WALL_SHUTDOWN_TIMEOUT", defaultShutdownTimeout), "longest graceful shutdown, the drain included; the process exits by then (WALL_SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&cfg.drainTime, "drain-time", envDur("WALL_DRAIN_TIME", defaultDrainTime), "on SIGTERM, close WebSockets and event streams spread over this long, so their clients reconnect elsewhere at an even rate; capped at -shutdown-timeout less 3s (WALL_DRAIN_TIME)")
	fs.Float64Var(&cfg.server.PostRate, "post-rate", envFloat("WALL_POST_RATE", defaultPostRate), "posts per second one client (address) may sustain, form and WebSocket frame posts; past it 429 with Retry-After, or an error frame; 0 for no limit (WALL_POST_RATE)")
	fs.IntVar(&cfg.server.PostBurst, "post-burst", envInt("WALL_POST_BURST", defaultPostBurst), "posts one client may make at once before -post-rate applies (WALL_POST_BURST)")
	fs.IntVar(&cfg.server.MaxConnsPerClient, "max-conns-per-client", envInt("WALL_MAX_CONNS_PER_CLIENT", 0), "WebSockets, event streams and waiting long-polls one client (address) may hold at once; past it 429; 0 for no limit (WALL_MAX_CONNS_PER_CLIENT)")
	var trusted string
	fs.StringVar(&trusted, "trusted-proxies", env("WALL_TRUSTED_PROXIES", defaultTrustedProxies), "comma-separated CIDRs of proxies whose X-Real-IP / X-Forwarded-For (client address) and X-Forwarded-Proto are believed; empty trusts none (WALL_TRUSTED_PROXIES)")
	fs.StringVar(&cfg.logLevel, "log-level", env("WALL_LOG_LEVEL", "info"), "debug, info, warn or error (WALL_LOG_LEVEL)")
	fs.StringVar(&cfg.debugAddr, "debug-addr", env("WALL_DEBUG_ADDR", ""), "serve /debug/pprof/ on this address, e.g. 127.0.0.1:6060; keep it private (WALL_DEBUG_ADDR)")
	var err error
	if err = fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.cacheSize < 1 {
		return cfg, fmt.Errorf("-cache must be at least 1")
	}
	if cfg.cacheBytes, err = parseBytes(cacheBytes); err != nil {
		return cfg, fmt.Errorf("-cache-bytes: %w", err)
	}
	if cfg.server.AdminToken == "" {
		cfg.server.AdminToken = cfg.server.PublishToken
	}
	if cfg.drainTime < 0 || cfg.shutdownTimeout <= 0 {
		return cfg, fmt.Errorf("-drain-time must not be negative, -shutdown-timeout must be positive")
	}
	if cfg.server.PostRate < 0 || cfg.server.PostBurst < 1 || cfg.server.MaxConnsPerClient < 0 {
		return cfg, fmt.Errorf("-post-rate and -max-conns-per-client must not be negative, -post-burst must be at least 1")
	}
	if cfg.server.TrustedProxies, err = server.ParsePrefixes(trusted); err != nil {
		return cfg, fmt.Errorf("-trusted-proxies: %w", err)
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

// drainSpan is the span of the drain: -drain-time, capped so that the
// drain and the last close handshakes fit in -shutdown-timeout.
func (c config) drainSpan() time.Duration {
	return max(0, min(c.drainTime, c.shutdownTimeout-drainReserve))
}
