package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"wall/server"
	"wall/wall"
	"wall/wall/redisbroker"
)

// newBroker returns the in-process broker, or the Redis one when a Redis URL
// is configured (its Redis calls timed on reg, its Ready for /readyz), and
// a function that releases what it holds.
func newBroker(cfg config, hub *wall.Hub, log *slog.Logger, reg prometheus.Registerer) (wall.Broker, func(context.Context) error, func(), error) {
	if cfg.redisURL == "" {
		return wall.NewMemoryBroker(hub), nil, func() {}, nil
	}
	opts, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-redis: %w", err)
	}
	// Fail fast while Redis is away (posts answer 503 within about a
	// second, not after go-redis's default 5 dial retries of 5 s each) and
	// reconnect promptly when it is back. Values set in the URL win.
	if opts.DialTimeout == 0 {
		opts.DialTimeout = time.Second
	}
	if opts.DialerRetries == 0 {
		opts.DialerRetries = 1
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 1
	}
	opts.ContextTimeoutEnabled = true
	client := redis.NewClient(opts)
	b := redisbroker.New(client, hub, redisbroker.Config{
		History:      cfg.cacheSize,
		BodyLimit:    cfg.server.BodyLimit,
		Log:          log,
		ObserveRedis: server.NewRedisMetrics(reg),
	})
	return b, b.Ready, func() { client.Close() }, nil
}
