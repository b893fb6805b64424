package redisbroker

import (
	"context"
	"errors"
	"strconv"

	"wall/wall"
)

// This file holds how one wall is brought up to date with Redis's history
// (applying the missing range, replacing the wall, or restoring Redis from
// this cache), in two halves: fetchWall, run by a history reader, does the
// Redis work and returns a plan; applyPlan, run by the applier, carries it
// out on the wall. Between the two the applier writes nothing to the wall
// (see reads.go), so what fetchWall read of it still holds.

// plan is what fetchWall decided the applier does to the wall.
type plan struct {
	kind  planKind
	msgs  []*wall.Message // planRange: the messages after the wall's last; planReplace: the new cache
	epoch string          // planReplace: Redis's epoch, adopted
}

type planKind int

const (
	planNone    planKind = iota // nothing to apply: up to date, or Redis knows nothing the wall lacks
	planRange                   // apply msgs after the wall's last message
	planReplace                 // replace the wall with msgs, in epoch
)

// fetchWall works out how w catches up with Redis, doing the Redis part:
// reads, and the writes that repair Redis. It runs on a history reader,
// while the applier leaves w as it is.
//
//   - Redis does not know the wall but this instance holds messages: Redis
//     came back empty, so the wall is restored into Redis from this cache
//     (wall_restore; the most complete cache wins) and numbering continues.
//   - Same epoch, Redis ahead: the missing messages are applied in order.
//     The entry at this instance's last seq is compared by id.
//   - Same epoch, Redis behind (a failover to a replica that missed the
//     newest writes): the messages it lacks are restored from this cache
//     and numbering continues.
//   - Same epoch, but the histories diverged (a post took a seq this
//     instance holds another message at, before any instance restored it):
//     the wall moves to a new epoch in Redis (wall_reepoch), so that no
//     cursor of the old numbering is read as a position in the new one.
//   - Another epoch, a gap wider than the history, or a wall new to this
//     instance: the wall is replaced with Redis's history. Subscribers and
//     clients holding a position in the old numbering get a reset.
func (b *Broker) fetchWall(ctx context.Context, w *wall.Wall) (plan, error) {
	name := w.Name()
	if b.readHook != nil {
		b.readHook(name)
	}
	for range 3 {
		last, ep := w.Last(), w.Epoch()
		since := last
		if ep == "" {
			since = 0
		}
		st, err := b.read(ctx, name, since)
		if err != nil {
			return plan{}, err
		}
		switch {
		case !st.exists:
			if last == 0 {
				return plan{}, nil
			}
			if _, err := b.restoreInto(ctx, w, ep); err != nil {
				return plan{}, err
			}
			continue // re-read: ours or another instance's restore won
		case st.epoch == ep && st.seq >= last:
			switch rangeAfter(w, last, st.entries) {
			case rangeContinues:
				p := plan{kind: planRange}
				for _, e := range st.entries {
					if e.seq > last {
						p.msgs = append(p.msgs, e.message())
					}
				}
				return p, nil
			case rangeDiverged:
				if err := b.reepoch(ctx, w, ep); err != nil {
					return plan{}, err
				}
				continue // re-read: the new epoch replaces the wall
			}
			// The entry at last was evicted from the history: replace.
		case st.epoch == ep:
			restored, err := b.restoreInto(ctx, w, ep)
			if err != nil {
				return plan{}, err
			}
			if !restored {
				// Refused: restored by another instance meanwhile, or diverged.
				n, err := b.read(ctx, name, last)
				if err != nil {
					return plan{}, err
				}
				if !n.exists || n.epoch != ep || n.seq < last {
					if err := b.reepoch(ctx, w, ep); err != nil {
						return plan{}, err
					}
				}
			}
			continue
		}
		return b.replacePlan(ctx, name, st, since)
	}
	return plan{}, nil
}

// rangeResult is what rangeAfter made of a range of the history.
type rangeResult int

const (
	rangeContinues rangeResult = iota // the wall continues with the range
	rangeGap                          // the range does not reach back to the wall's last seq, or skips one
	rangeDiverged                     // the history holds another message at the wall's last seq
)

// rangeAfter tells whether entries (seq >= last, oldest first) continue the
// wall after its last message: the entry at last must be there (not
// evicted from the history) and be the same message, and no seq may be
// missing after it (a malformed entry skipped).
func rangeAfter(w *wall.Wall, last uint64, entries []*redisEvent) rangeResult {
	if last > 0 {
		if len(entries) == 0 || entries[0].seq != last {
			return rangeGap
		}
		if m, _ := w.WaitApplied(context.Background(), last); m != nil && m.ID != entries[0].id {
			return rangeDiverged
		}
	}
	next := last + 1
	for _, e := range entries {
		switch {
		case e.seq <= last:
		case e.seq == next:
			next++
		default:
			return rangeGap
		}
	}
	return rangeContinues
}

// applyPlan carries out p on w; it reports false when the wall did not
// take it (it changed since p was made), and must be read again. Must only
// be called from the applier.
func (b *Broker) applyPlan(w *wall.Wall, p plan) bool {
	switch p.kind {
	case planRange:
		for _, m := range p.msgs {
			err := w.Apply(m)
			switch {
			case err == nil:
				b.applied.Add(1)
			case !errors.Is(err, wall.ErrDuplicate):
				return false
			}
		}
	case planReplace:
		b.applied.Add(uint64(len(p.msgs)))
		prev, prevEpoch := w.Last(), w.Epoch()
		if prev == 0 {
			w.Restore(p.msgs, p.epoch)
			return true
		}
		w.Replace(p.msgs, p.epoch) // a discontinuity: subscribers are told to reset
		b.log.Warn("wall reloaded from redis history", "wall", wall.LogName(w.Name()),
			"last", prev, "epoch", prevEpoch, "new_last", w.Last(), "new_epoch", p.epoch)
	}
	return true
}

// reepoch moves the wall to a new epoch in Redis, after its history there
// diverged from what this instance delivered. The caller re-reads and
// replaces.
func (b *Broker) reepoch(ctx context.Context, w *wall.Wall, epoch string) error {
	v, err := b.fcall(ctx, "wall_reepoch", w.Name(), epoch)
	if err != nil {
		return err
	}
	b.log.Warn("wall history in redis diverged from the one delivered (messages lost in a failover, then reused); moved to a new epoch, clients are reset",
		"wall", wall.LogName(w.Name()), "last", w.Last(), "epoch", epoch, "new_epoch", v)
	return nil
}

// replacePlan returns the plan that loads the wall's whole Redis history
// (read again from the start unless st is that already) and adopts
// Redis's epoch.
func (b *Broker) replacePlan(ctx context.Context, name string, st redisState, since uint64) (plan, error) {
	if since != 0 {
		var err error
		if st, err = b.read(ctx, name, 0); err != nil {
			return plan{}, err
		}
	}
	msgs := make([]*wall.Message, 0, len(st.entries))
	for _, e := range st.entries {
		msgs = append(msgs, e.message())
	}
	if len(msgs) > b.hub.CacheSize() {
		msgs = msgs[len(msgs)-b.hub.CacheSize():]
	}
	return plan{kind: planReplace, msgs: msgs, epoch: st.epoch}, nil
}

// restoreInto offers this instance's cache of w to Redis (wall_restore)
// and reports whether Redis took it.
func (b *Broker) restoreInto(ctx context.Context, w *wall.Wall, epoch string) (bool, error) {
	msgs := w.Messages()
	if len(msgs) == 0 {
		return false, nil
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
		return false, err
	}
	n, _ := v.(int64)
	if n == 1 {
		b.log.Info("wall restored into redis from this cache", "wall", wall.LogName(w.Name()), "last", last, "epoch", epoch)
	}
	return n == 1, nil
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
