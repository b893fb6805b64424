package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall"
	"wall/wall/redisbroker"
)

// newBroker returns the in-process broker, or the Redis one when a Redis URL
// is configured, and a function that releases what it holds.
func newBroker(cfg config, hub *wall.Hub, log *slog.Logger) (wall.Broker, func(), error) {
	if cfg.redisURL == "" {
		return wall.NewMemoryBroker(hub), func() {}, nil
	}
	opts, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		return nil, nil, fmt.Errorf("-redis: %w", err)
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
		History:   cfg.cacheSize,
		BodyLimit: cfg.server.BodyLimit,
		Log:       log,
	})
	return b, func() { client.Close() }, nil
}
