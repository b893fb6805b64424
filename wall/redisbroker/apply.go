package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall"
)

// This file holds the two goroutines of a Broker: the pub/sub reader,
// which only parses and hands over, and the applier, the one writer of the
// hub's walls.

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
				mu.Lock()
				_ = ps.Close()
				if ctx.Err() == nil {
					ps = b.client.Subscribe(ctx, b.channel())
				}
				mu.Unlock()
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
	// Counted as a user, so a poller's Release cannot drop the wall (still
	// empty) between here and the Apply.
	w := b.hub.Acquire(e.wallName)
	defer b.hub.Release(w)
	last, ep := w.Last(), w.Epoch()
	switch {
	case ep == e.epoch && e.seq <= last:
		return // already applied, e.g. by a resync
	case ep == e.epoch || (ep == "" && last == 0 && e.seq == 1):
		// A wall without an epoch takes the message's.
		err := w.Apply(e.message())
		if err == nil || errors.Is(err, wall.ErrDuplicate) {
			return
		}
	}
	// A gap, a new epoch, or a wall this instance does not hold yet.
	b.resyncWall(ctx, e.wallName)
}

// resyncDirty resyncs the walls marked by the reader.
func (b *Broker) resyncDirty(ctx context.Context) {
	b.dirty.Lock()
	all, walls := b.dirty.all, b.dirty.walls
	b.dirty.all, b.dirty.walls = false, make(map[string]struct{})
	b.dirty.Unlock()
	if all {
		for _, n := range b.hub.Names() {
			walls[n] = struct{}{}
		}
	}
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
// pipeline, and resyncs those that differ: messages sequenced while the
// pub/sub connection was down, or a wall Redis lost. Must only be called
// from the applier.
func (b *Broker) check(ctx context.Context) {
	b.pruneEmpty()
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
		b.log.Debug("redis resync check failed", "err", err)
		return
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

// resyncWall brings one wall up to date with Redis. Must only be called
// from the applier.
//
//   - Redis does not know the wall but this instance holds messages: Redis
//     came back empty, so the wall is restored into Redis from this cache
//     (wall_restore; the most complete cache wins) and numbering continues.
//   - Same epoch: the missing messages are applied in order. The entry at
//     this instance's last seq is compared by id, so a diverged history (a
//     restore that lost messages this instance had) is not mixed in.
//   - Another epoch (Redis lost the wall and it was posted to anew), a
//     gap wider than the history, or a wall new to this instance: the wall
//     is replaced with Redis's history (Wall.Restore). Clients holding a seq
//     cursor past the new last get the whole cache with reset:true.
func (b *Broker) resyncWall(ctx context.Context, name string) error {
	w := b.hub.Acquire(name)
	defer b.hub.Release(w)
	for range 3 {
		last, ep := w.Last(), w.Epoch()
		since := last
		if ep == "" {
			since = 0
		}
		st, err := b.read(ctx, name, since)
		if err != nil {
			return err
		}
		if !st.exists {
			if last == 0 {
				return nil
			}
			if err := b.restoreInto(ctx, w, ep); err != nil {
				return err
			}
			continue // re-read: ours or another instance's restore won
		}
		if st.epoch == ep && st.seq >= last {
			if b.applyRange(w, last, st.entries) {
				return nil
			}
		} else if st.epoch == ep && st.seq < last {
			// Redis has fewer messages than we do in our epoch: another
			// instance restored a shorter cache. Offer ours, then re-read.
			if err := b.restoreInto(ctx, w, ep); err != nil {
				return err
			}
			if n, _ := b.read(ctx, name, 0); n.exists && n.epoch == ep && n.seq >= last {
				continue
			}
		}
		return b.replace(ctx, w, st, since)
	}
	return nil
}

// applyRange applies entries (seq >= last, oldest first) after the wall's
// last message. It reports false when they do not continue the wall: the
// entry at last is missing (evicted from the history) or is another
// message.
func (b *Broker) applyRange(w *wall.Wall, last uint64, entries []*redisEvent) bool {
	i := 0
	if last > 0 {
		if len(entries) == 0 || entries[0].seq != last {
			return false
		}
		if m, _ := w.WaitApplied(context.Background(), last); m != nil && m.ID != entries[0].id {
			return false
		}
		i = 1
	}
	for _, e := range entries[i:] {
		if err := w.Apply(e.message()); err != nil && !errors.Is(err, wall.ErrDuplicate) {
			return false
		}
	}
	return true
}

// replace loads the wall's whole Redis history with Wall.Restore and adopts
// Redis's epoch.
func (b *Broker) replace(ctx context.Context, w *wall.Wall, st redisState, since uint64) error {
	if since != 0 {
		var err error
		if st, err = b.read(ctx, w.Name(), 0); err != nil {
			return err
		}
	}
	msgs := make([]*wall.Message, 0, len(st.entries))
	for _, e := range st.entries {
		msgs = append(msgs, e.message())
	}
	if len(msgs) > b.hub.CacheSize() {
		msgs = msgs[len(msgs)-b.hub.CacheSize():]
	}
	prev, prevEpoch := w.Last(), w.Epoch()
	if prev > 0 {
		w.Replace(msgs, st.epoch) // a discontinuity: subscribers are told to reset
	} else {
		w.Restore(msgs, st.epoch)
	}
	if prev > 0 {
		b.log.Warn("wall reloaded from redis history", "wall", w.Name(),
			"last", prev, "epoch", prevEpoch, "new_last", w.Last(), "new_epoch", st.epoch)
	}
	return nil
}

// restoreInto offers this instance's cache of w to Redis (wall_restore).
func (b *Broker) restoreInto(ctx context.Context, w *wall.Wall, epoch string) error {
	msgs := w.Messages()
	if len(msgs) == 0 {
		return nil
	}
	if epoch == "" {
		// Not reached in practice (every message a Redis broker applies
		// has an epoch); the next resync adopts this one with Replace.
		epoch = wall.NewEpoch()
	}
	last := msgs[len(msgs)-1].Seq
	args := make([]any, 0, 3+3*len(msgs))
	args = append(args, epoch, last, b.cfg.History)
	for _, m := range msgs {
		args = append(args, m.Seq, m.ID, encodePayload(m.Seq, epoch, m.ID, w.Name(), m.Body))
	}
	v, err := b.fcall(ctx, "wall_restore", w.Name(), args...)
	if err != nil {
		return err
	}
	if n, _ := v.(int64); n == 1 {
		b.log.Info("wall restored into redis from this cache", "wall", w.Name(), "last", last, "epoch", epoch)
	}
	return nil
}

// redisState is a wall as wall_read returned it.
type redisState struct {
	exists  bool
	seq     uint64
	epoch   string
	entries []*redisEvent
}

// read returns the wall's seq, epoch and the history entries with
// seq >= since.
func (b *Broker) read(ctx context.Context, wallName string, since uint64) (redisState, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	v, err := b.fcall(ctx, "wall_read", wallName, since)
	if err != nil {
		return redisState{}, err
	}
	vals, _ := v.([]any)
	if len(vals) < 2 {
		return redisState{}, nil
	}
	st := redisState{exists: true, entries: make([]*redisEvent, 0, len(vals)-2)}
	s, _ := vals[0].(string)
	st.seq, _ = strconv.ParseUint(s, 10, 64)
	st.epoch, _ = vals[1].(string)
	for _, x := range vals[2:] {
		p, _ := x.(string)
		e, err := parsePayload(p)
		if err != nil {
			b.log.Warn("redis: skipping malformed history entry", "wall", wallName, "err", err)
			continue
		}
		st.entries = append(st.entries, e)
	}
	return st, nil
}

// encodePayload builds the sequencer's payload: "<seq> <epoch> <id> <wall>\n<body>".
func encodePayload(seq uint64, epoch, id, wallName, body string) string {
	return strconv.FormatUint(seq, 10) + " " + epoch + " " + id + " " + wallName + "\n" + body
}

// parsePayload parses a payload made by the sequencer.
func parsePayload(p string) (*redisEvent, error) {
	head, body, ok := strings.Cut(p, "\n")
	if !ok {
		return nil, fmt.Errorf("payload without a body line: %.80q", p)
	}
	f := strings.Fields(head)
	if len(f) != 4 {
		return nil, fmt.Errorf("payload header %.80q", head)
	}
	seq, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("payload seq %.20q", f[0])
	}
	return &redisEvent{seq: seq, epoch: f[1], id: f[2], wallName: f[3], body: body}, nil
}

// message renders the event. The body is cleaned again (a redis-cli
// publisher may send anything); cleaning is deterministic, so every
// instance renders the same message.
func (e *redisEvent) message() *wall.Message {
	body, err := wall.CleanBody(e.body)
	if err != nil {
		body, _ = wall.CleanBody(strings.ToValidUTF8(e.body, "\uFFFD"))
	}
	return wall.NewMessage(e.id, e.seq, e.epoch, body)
}
