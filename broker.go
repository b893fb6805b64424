package main

import (
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"wall/wall"
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
	client := redis.NewClient(opts)
	b := wall.NewRedisBroker(client, hub, wall.RedisConfig{
		History:   cfg.cacheSize,
		BodyLimit: cfg.server.BodyLimit,
		Log:       log,
	})
	return b, func() { client.Close() }, nil
}
