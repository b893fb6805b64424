package redisbroker

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall"
)

// This file holds Sync, which catches a wall up to a cursor, and the
// ways Publish, Sync and the reader ask the applier for work: resync
// requests (waited for) and dirty marks (never blocking).

// resyncReq asks the applier to bring a wall up to date with Redis (at
// least to seq target, if known). done (1-buffered) gets the outcome once
// it has tried: nil when the wall now matches Redis.
type resyncReq struct {
	wallName string
	target   uint64
	done     chan error
}

// Sync catches this instance up to cursor c, which may have been minted by
// another instance a moment ago. The wall is followed from the first user
// on (the caller holds it, or Sync does): Sync first waits, briefly, for
// its subscription, so that what it reads from the history and what the
// stream brings after leave nothing between them. Then a seq cursor ahead
// of the wall waits briefly for the pub/sub stream, then reads the Redis
// history; an id cursor unknown here is looked up in the Redis history
// first; with no cursor, a wall this instance holds no message of is
// loaded from the history; a cursor of an epoch this instance does not
// hold loads the wall's current epoch from Redis. Sync returns nil when
// caught up or when the cursor is unknown to Redis too (the poll then
// answers the whole cache with reset), and ErrUnavailable when Redis could
// not tell.
func (b *Broker) Sync(ctx context.Context, wallName string, c wall.Cursor) error {
	w := b.hub.Acquire(wallName)
	defer b.hub.Release(w)
	if w.Has(c) && w.Last() > 0 {
		return nil
	}
	if b.isStopped() {
		return unavailable(errStopped)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	live := b.awaitLive(ctx, wallName)
	if !c.Set && w.Last() == 0 && live && b.knownEmpty(wallName) {
		return nil
	}
	if !c.Set {
		b.resync(ctx, wallName, 0)
		b.noteEmpty(wallName, w)
		return nil
	}
	if c.Epoch != "" && c.Epoch != w.Epoch() {
		// Another numbering: Redis may hold a newer epoch than this
		// instance has loaded (it lost the wall and a peer started anew).
		// Load it; a cursor still foreign afterwards is from an epoch
		// that is gone, and the caller answers it with a reset.
		if err := b.resync(ctx, wallName, 0); err != nil {
			return unavailable(err)
		}
		if c.Epoch != w.Epoch() {
			return nil
		}
	}
	seq := c.Seq
	if c.ID != "" {
		score, err := b.client.ZScore(ctx, b.key(wallName)+":ids", c.ID).Result()
		switch {
		case errors.Is(err, redis.Nil):
			if w.Last() == 0 {
				b.resync(ctx, wallName, 0)
				b.noteEmpty(wallName, w)
			}
			return nil // unknown everywhere
		case err != nil:
			return unavailable(err)
		}
		seq = uint64(score)
	}
	if w.Last() >= seq && seq > 0 {
		return nil
	}
	wctx, wcancel := context.WithTimeout(ctx, redisSyncWait)
	_, err := w.WaitApplied(wctx, seq)
	wcancel()
	if err != nil || seq == 0 {
		// A cursor this instance cannot place, and Redis could not be
		// asked: the caller must not take it for unknown (a reset).
		if err := b.resync(ctx, wallName, seq); err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// knownEmpty reports whether a Sync found wall empty in Redis within the
// last ResyncInterval.
func (b *Broker) knownEmpty(wallName string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.emptyAt[wallName]
	return ok && time.Since(t) < b.cfg.ResyncInterval
}

// noteEmpty records that w is still empty after a resync.
func (b *Broker) noteEmpty(wallName string, w *wall.Wall) {
	if w.Last() != 0 {
		return
	}
	b.mu.Lock()
	b.emptyAt[wallName] = time.Now()
	b.mu.Unlock()
}

// pruneEmpty forgets the empty marks that have expired; the applier calls
// it with each periodic check, so the map holds at most the walls synced
// in one interval.
func (b *Broker) pruneEmpty() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for n, t := range b.emptyAt {
		if time.Since(t) >= b.cfg.ResyncInterval {
			delete(b.emptyAt, n)
		}
	}
}

// resync asks the applier to bring wall up to date (by a read on a
// history reader, see reads.go) and waits until it has tried, or ctx ends, or the broker has stopped (errStopped). It returns nil
// when the wall matches Redis.
func (b *Broker) resync(ctx context.Context, wallName string, target uint64) error {
	r := resyncReq{wallName: wallName, target: target, done: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-b.stopped:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-b.stopped: // the applier died with the request
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// markDirty schedules a resync of wall without blocking: a reader that
// cannot hand a message over, or a subscription just confirmed.
func (b *Broker) markDirty(wallName string) {
	b.dirty.Lock()
	b.dirty.walls[wallName] = struct{}{}
	b.dirty.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}
