package redisbroker

import (
	"context"
	"errors"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// This file holds the periodic check, which compares every held wall's seq
// and epoch with Redis and has those that differ read: messages sequenced
// while a pub/sub connection was down, or a wall Redis lost (wholly, or
// its newest messages in a failover). The applier asks each node for its
// walls on a history reader of the node's lane, one check per node at a
// time, so a node that does not answer delays only its own walls' checks.

// checked is one wall's seq and epoch in Redis, as a check read them.
type checked struct {
	ok    bool // Redis answered for the wall
	seq   uint64
	epoch string
}

// check starts a check of each node's held walls, but of a node whose
// last check is still queued or running. The hub holds only the walls
// this instance follows. Must only be called from the applier.
func (ap *applier) check(ctx context.Context) {
	b := ap.b
	b.pruneEmpty()
	for n := range ap.behind {
		if b.hub.Lookup(n) == nil {
			delete(ap.behind, n)
		}
	}
	byNode := make(map[string][]string)
	for _, n := range b.hub.Names() {
		node := b.nodeOf(ctx, n)
		byNode[node] = append(byNode[node], n)
	}
	for node, names := range byNode {
		if l := ap.lanes[node]; l != nil && l.checking {
			continue
		}
		ap.submit(ctx, &job{node: node, names: names})
		if l := ap.lanes[node]; l != nil {
			l.checking = true
		}
	}
}

// checkNode reads the seq and epoch of the named walls in one pipeline.
// It runs on a history reader.
func (b *Broker) checkNode(ctx context.Context, names []string) ([]checked, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	pipe := b.client.Pipeline()
	cmds := make([]*redis.SliceCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HMGet(ctx, b.key(n)+":meta", "seq", "epoch")
	}
	_, err := pipe.Exec(ctx)
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	// Should the slots have moved, some walls are on another node: each
	// command has its own outcome.
	out := make([]checked, len(names))
	for i := range names {
		vals, err := cmds[i].Result()
		if err != nil || len(vals) != 2 {
			continue
		}
		seqStr, _ := vals[0].(string)
		out[i].epoch, _ = vals[1].(string)
		out[i].seq, _ = strconv.ParseUint(seqStr, 10, 64)
		out[i].ok = true
	}
	return out, err
}

// checked has the walls read that a node's check found different from
// Redis. A wall with a read under way is left to that read.
func (ap *applier) checked(ctx context.Context, j *job) {
	b := ap.b
	if j.err != nil && ctx.Err() == nil {
		b.log.Debug("redis resync check failed", "node", j.node, "err", j.err)
	}
	for i, n := range j.names {
		w := b.hub.Lookup(n)
		st := j.states[i]
		if w == nil || !st.ok || ap.flights[n] != nil {
			continue
		}
		last := w.Last()
		if st.epoch == "" && last == 0 {
			continue
		}
		ep := w.Epoch()
		if st.epoch == ep && st.seq > last && ap.behind[n] <= last {
			// Probably in flight on the stream: read only if the wall is
			// still behind this seq at the next check.
			ap.behind[n] = st.seq
			continue
		}
		delete(ap.behind, n)
		if st.epoch != ep || st.seq != last {
			ap.want(ctx, n, nil)
		}
	}
}
