package redisbroker

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the pub/sub reader, one of Run's two goroutines: it
// only parses messages and hands them to the applier, never blocking.

// readLoop receives from the pub/sub connection until ctx is done. It never
// blocks on the applier: when the queue is full the wall is marked dirty
// and refilled from the Redis history later. Every (re)subscription marks
// all walls dirty, because messages sent while the connection was down
// never arrive. Must only run as Run's reader goroutine.
func (b *Broker) readLoop(ctx context.Context) {
	var mu sync.Mutex // guards ps against the closer below
	ps := b.client.Subscribe(ctx, b.channel())
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(closed)
		mu.Lock()
		defer mu.Unlock()
		_ = ps.Close() // ends a blocked Receive
	})
	defer func() {
		if !stop() {
			<-closed // the closer runs: wait so that it does not outlive Run
			return
		}
		mu.Lock()
		_ = ps.Close()
		mu.Unlock()
	}()

	backoff := 50 * time.Millisecond
	pinged := false // a health-check ping is unanswered
	for ctx.Err() == nil {
		mu.Lock()
		cur := ps
		mu.Unlock()
		v, err := cur.ReceiveTimeout(ctx, redisPingEvery)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if !pinged {
					pinged = true
					_ = cur.Ping(ctx)
					continue
				}
				// No answer to a ping: the connection is dead without
				// knowing it. Start over on a new one.
				b.log.Warn("redis pub/sub unresponsive; reconnecting")
				func() {
					mu.Lock()
					defer mu.Unlock() // a panic here must not leave the deferred close stuck on mu
					_ = ps.Close()
					if ctx.Err() == nil {
						ps = b.client.Subscribe(ctx, b.channel())
					}
				}()
				pinged = false
				continue
			}
			b.log.Debug("redis pub/sub receive", "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, redisMaxBackoff)
			continue
		}
		backoff, pinged = 50*time.Millisecond, false
		switch m := v.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				b.log.Info("redis pub/sub subscribed; resyncing walls", "channel", m.Channel)
				b.markDirty("")
			}
		case *redis.Message:
			if b.panicHook != nil {
				b.panicHook("reader")
			}
			if b.dropPubSub.Load() {
				continue
			}
			e, err := parsePayload(m.Payload)
			if err != nil {
				b.log.Warn("redis: ignoring malformed message", "err", err)
				continue
			}
			select {
			case b.msgs <- e:
			default:
				b.markDirty(e.wallName) // refilled from history, in order
			}
		}
	}
}
