package redisbroker

import (
	"context"
	"errors"
	"strconv"

	"wall/wall"
)

// This file holds resyncWall, which brings one wall up to date with
// Redis's history (applying the missing range, replacing the wall, or
// restoring Redis from this cache), and the wall_read call it is built on.
// Everything here runs on the applier.

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
		b.log.Warn("wall reloaded from redis history", "wall", wall.LogName(w.Name()),
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
		args = append(args, m.Seq, m.ID, encodePayload(w.Name(), epoch, m))
	}
	v, err := b.fcall(ctx, "wall_restore", w.Name(), args...)
	if err != nil {
		return err
	}
	if n, _ := v.(int64); n == 1 {
		b.log.Info("wall restored into redis from this cache", "wall", wall.LogName(w.Name()), "last", last, "epoch", epoch)
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
			b.log.Warn("redis: skipping malformed history entry", "wall", wall.LogName(wallName), "err", err)
			continue
		}
		st.entries = append(st.entries, e)
	}
	return st, nil
}
