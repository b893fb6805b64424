package redisbroker

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall"
)

// This file holds the applier, the other of Run's two goroutines and the
// only writer of the hub's walls: it applies pub/sub messages in order,
// serves resync requests, resyncs dirty walls and periodically compares the
// held walls with Redis.

// applyLoop is the applier: the only goroutine that writes to the hub's
// walls (their epochs included). It applies pub/sub messages in seq order, serves
// resync requests, resyncs dirty walls, and every ResyncInterval compares
// the held walls with Redis.
func (b *Broker) applyLoop(ctx context.Context) {
	tick := time.NewTicker(b.cfg.ResyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-b.msgs:
			b.applyEvent(ctx, e)
		case r := <-b.reqs:
			var err error
			if w := b.hub.Lookup(r.wallName); r.target == 0 || w == nil || w.Last() < r.target || w.Epoch() == "" {
				err = b.resyncWall(ctx, r.wallName)
			}
			r.done <- err
		case <-b.kick:
			b.resyncDirty(ctx)
		case <-tick.C:
			b.resyncDirty(ctx)
			b.check(ctx)
		}
	}
}

// applyEvent applies one message from the stream, or resyncs its wall when
// it does not follow the wall's last seq and epoch.
func (b *Broker) applyEvent(ctx context.Context, e *redisEvent) {
	if b.panicHook != nil {
		b.panicHook("applier")
	}
	// Not acquired: the applier's work is not a use of the wall (it would
	// keep a lingering wall followed for ever). A wall the hub does not
	// hold (dropped empty, or evicted with its subscription on the way
	// out) is read from the history by its next user.
	w := b.hub.Lookup(e.wallName)
	if w == nil {
		return
	}
	last, ep := w.Last(), w.Epoch()
	switch {
	case ep == e.epoch && e.seq <= last:
		return // already applied, e.g. by a resync
	case ep == e.epoch || (ep == "" && last == 0 && e.seq == 1):
		// A wall without an epoch takes the message's.
		err := w.Apply(e.message())
		if err == nil {
			b.applied.Add(1)
			return
		}
		if errors.Is(err, wall.ErrDuplicate) {
			return
		}
	}
	// A gap, a new epoch, or a wall this instance does not hold yet.
	b.resyncWall(ctx, e.wallName)
}

// resyncDirty resyncs the walls marked dirty.
func (b *Broker) resyncDirty(ctx context.Context) {
	b.dirty.Lock()
	walls := b.dirty.walls
	b.dirty.walls = make(map[string]struct{})
	b.dirty.Unlock()
	for n := range walls {
		if err := b.resyncWall(ctx, n); err != nil && ctx.Err() == nil {
			b.markDirtyQuiet(n) // retried at the next tick
		}
	}
}

// markDirtyQuiet marks a wall without kicking the applier, so a failing
// Redis is retried once per tick rather than in a loop.
func (b *Broker) markDirtyQuiet(wallName string) {
	b.dirty.Lock()
	b.dirty.walls[wallName] = struct{}{}
	b.dirty.Unlock()
}

// check compares every held wall's seq and epoch with Redis in one
// pipeline (one per node on a cluster), and resyncs those that differ:
// messages sequenced while the pub/sub connection was down, or a wall
// Redis lost (wholly, or its newest messages in a failover). The hub holds
// only the walls this instance follows. Must only be called from the
// applier.
func (b *Broker) check(ctx context.Context) {
	b.pruneEmpty()
	for n := range b.behind {
		if b.hub.Lookup(n) == nil {
			delete(b.behind, n)
		}
	}
	names := b.hub.Names()
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	pipe := b.client.Pipeline()
	cmds := make([]*redis.SliceCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HMGet(ctx, b.key(n)+":meta", "seq", "epoch")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		// On a cluster one node may be down (failing over) while the
		// others answer: each command has its own outcome.
		b.log.Debug("redis resync check failed", "err", err)
	}
	for i, n := range names {
		w := b.hub.Lookup(n)
		if w == nil {
			continue
		}
		vals, err := cmds[i].Result()
		if err != nil || len(vals) != 2 {
			continue
		}
		seqStr, _ := vals[0].(string)
		epoch, _ := vals[1].(string)
		seq, _ := strconv.ParseUint(seqStr, 10, 64)
		last := w.Last()
		if epoch == "" && last == 0 {
			continue
		}
		ep := w.Epoch()
		if epoch == ep && seq > last && b.behind[n] <= last {
			// Probably in flight on the stream: resync only if the wall is
			// still behind this seq at the next check.
			b.behind[n] = seq
			continue
		}
		delete(b.behind, n)
		if epoch != ep || seq != last {
			if err := b.resyncWall(ctx, n); err != nil {
				b.log.Debug("redis resync failed", "wall", n, "err", err)
			}
		}
	}
}
