package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"wall/server"
	"wall/wall"
	"wall/wall/presence"
	"wall/wall/redisbroker"
)

// newBroker returns the in-process broker, or the Redis one when a Redis URL
// or a Redis Cluster is configured (its Redis calls timed on reg, its Ready
// for /readyz), and a function that releases what it holds.
func newBroker(cfg config, hub *wall.Hub, log *slog.Logger, reg prometheus.Registerer) (wall.Broker, func(context.Context) error, func(), error) {
	if cfg.redisURL == "" && cfg.redisCluster == "" {
		return wall.NewMemoryBroker(hub), nil, func() {}, nil
	}
	client, err := newRedisClient(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	b := redisbroker.New(client, hub, redisbroker.Config{
		History:      cfg.cacheSize,
		BodyLimit:    cfg.server.BodyLimit,
		Log:          log,
		WaitReplica:  cfg.redisWait,
		ObserveRedis: server.NewRedisMetrics(reg),
	})
	return b, b.Ready, func() { client.Close() }, nil
}

// newPresence returns the presence store (GET /api/walls/<wall>, /admin)
// on a Redis client of its own, and a function that closes it; without
// Redis, none: each instance counts its own clients.
func newPresence(cfg config, addr string) (*presence.Store, func(), error) {
	if cfg.redisURL == "" && cfg.redisCluster == "" {
		return nil, func() {}, nil
	}
	client, err := newRedisClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return presence.New(client, presence.NewID(), presence.Config{Addr: addr}), func() { client.Close() }, nil
}

// newRedisClient returns a client of the configured Redis: one server
// (-redis, a URL) or a Redis Cluster (-redis-cluster: a list of seed
// nodes, host:port,host:port,..., or a cluster URL,
// redis://[user:password@]host:port?addr=host:port&addr=..., which also
// carries credentials and TLS). Each part that talks to Redis (the
// broker, presence) has a client of its own, so that neither waits for
// the other's connections.
func newRedisClient(cfg config) (redis.UniversalClient, error) {
	if cfg.redisCluster != "" {
		if cfg.redisURL != "" {
			return nil, fmt.Errorf("-redis and -redis-cluster: give one")
		}
		return newClusterClient(cfg.redisCluster)
	}
	opts, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	failFast(&opts.DialTimeout, &opts.DialerRetries, &opts.MaxRetries)
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}

// failFast sets a client's dial timeout and retries, unless the URL set
// them: a call fails within about a second while Redis (or a cluster node,
// a master failing over) is away — posts answer 503, not after go-redis's
// default 5 dial retries of 5 s each — and reconnects promptly when it is
// back.
func failFast(dialTimeout *time.Duration, dialerRetries, maxRetries *int) {
	if *dialTimeout == 0 {
		*dialTimeout = time.Second
	}
	if *dialerRetries == 0 {
		*dialerRetries = 1
	}
	if *maxRetries == 0 {
		*maxRetries = 1
	}
}

// newClusterClient returns a Redis Cluster client from -redis-cluster.
func newClusterClient(seeds string) (redis.UniversalClient, error) {
	var opts *redis.ClusterOptions
	if strings.HasPrefix(seeds, "redis://") || strings.HasPrefix(seeds, "rediss://") {
		var err error
		if opts, err = redis.ParseClusterURL(seeds); err != nil {
			return nil, fmt.Errorf("-redis-cluster: %w", err)
		}
	} else {
		opts = &redis.ClusterOptions{}
		for _, a := range strings.Split(seeds, ",") {
			a = strings.TrimSpace(a)
			if _, _, err := net.SplitHostPort(a); err != nil || a == "" {
				return nil, fmt.Errorf("-redis-cluster: %q is not host:port", a)
			}
			opts.Addrs = append(opts.Addrs, a)
		}
	}
	failFast(&opts.DialTimeout, &opts.DialerRetries, &opts.MaxRetries)
	opts.ContextTimeoutEnabled = true
	return redis.NewClusterClient(opts), nil
}
