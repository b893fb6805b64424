package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds what operations need of the broker: Ready, for a
// readiness probe, and the timing of every Redis call (Config.ObserveRedis).
// Both come from a go-redis hook on the broker's client, so nothing else in
// the broker knows about them.

// readySettle is how long the broker stays not ready after a Redis call
// failed for want of Redis (and after New). The pub/sub reader retries at
// least every redisMaxBackoff; once it is subscribed again it marks every
// wall for a resync, which Ready waits for. So an instance is ready again
// only once it has caught up with what it missed.
const readySettle = 2 * redisMaxBackoff

// readyPingTimeout bounds the PING of one Ready call.
const readyPingTimeout = 500 * time.Millisecond

// health is the broker's view of its link to Redis, kept by a hook on its
// client (a redis.Hook): when a call last failed for want of Redis, and
// the timing of every call for Config.ObserveRedis.
type health struct {
	since    time.Time                        // when the hook was installed (New)
	failedAt atomic.Int64                     // Unix ns of the last call Redis did not answer; 0 for none
	observe  func(op string, d time.Duration) // Config.ObserveRedis; may be nil
}

// install hooks h into client; New calls it once.
func (h *health) install(client redis.UniversalClient, observe func(op string, d time.Duration)) {
	h.since, h.observe = time.Now(), observe
	client.AddHook(h)
}

// DialHook notes a connection that could not be made: the pub/sub reader's
// reconnections come this way too.
func (h *health) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		h.note(err)
		return c, err
	}
}

// ProcessHook times a command and notes whether Redis answered it.
func (h *health) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		if h.observe != nil {
			h.observe(opName(cmd), time.Since(start))
		}
		h.note(err)
		return err
	}
}

// ProcessPipelineHook times a pipeline (the periodic check) as one call.
func (h *health) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		if h.observe != nil {
			h.observe("pipeline", time.Since(start))
		}
		h.note(err)
		return err
	}
}

// note records err if it says Redis could not be reached or did not
// answer in time. Redis's own error replies, a missing key and a caller
// that gave up are answers, not failures.
func (h *health) note(err error) {
	var reply redis.Error
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.As(err, &reply) {
		return
	}
	h.failedAt.Store(time.Now().UnixNano())
}

// opName names a command for ObserveRedis: its name, and for a function
// call the function's (a fixed set: the library's).
func opName(cmd redis.Cmder) string {
	name := cmd.Name()
	if name == "fcall" || name == "fcall_ro" {
		if args := cmd.Args(); len(args) > 1 {
			if fn, ok := args[1].(string); ok {
				return name + " " + fn
			}
		}
	}
	return name
}

// Ready reports whether this instance is in step with Redis, for a
// readiness probe: nil when the broker runs, Redis answers a PING, no call
// has failed for want of Redis for readySettle (nor has the broker just
// started), and no wall waits for a resync (as after a reconnect, when
// messages sent while the stream was down are read from the history).
// Otherwise the error says which. It makes one Redis call.
func (b *Broker) Ready(ctx context.Context) error {
	if b.isStopped() {
		return errStopped
	}
	ctx, cancel := context.WithTimeout(ctx, readyPingTimeout)
	defer cancel()
	if err := b.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis unreachable: %w", err)
	}
	last := b.health.since
	if at := b.health.failedAt.Load(); at != 0 {
		last = time.Unix(0, at)
	}
	if time.Since(last) < readySettle {
		return errors.New("connecting to redis: catching up")
	}
	b.dirty.Lock()
	pending := len(b.dirty.walls) > 0
	b.dirty.Unlock()
	if pending {
		return errors.New("catching up with redis: walls to resync")
	}
	return nil
}
