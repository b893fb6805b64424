package redisbroker

import (
	"context"
	"errors"
	"strings"
	"time"
	"wall/wall"

	"github.com/redis/go-redis/v9"
)

// This file holds the optional replication wait of a post (Config.
// WaitReplica): wall_publish and WAIT 1 <timeout> in one pipeline on the
// connection of the wall's master, so that a post is answered once a
// replica has it. Redis replicates asynchronously: without the wait, a
// master that dies right after a post may take it with it, and only an
// instance that applied the message can put it back (wall_restore).

// unreplicatedLogEvery bounds the warnings about posts answered before a
// replica had them.
const unreplicatedLogEvery = 10 * time.Second

// publishCall runs wall_publish with args, and with Config.WaitReplica
// set, WAIT after it. A MOVED reply (the wall's slot has another master
// since) means nothing ran: the topology is reloaded and the call made
// again.
func (b *Broker) publishCall(ctx context.Context, wallName string, args ...any) (any, error) {
	if b.cfg.WaitReplica <= 0 {
		return b.fcall(ctx, "wall_publish", wallName, args...)
	}
	var v any
	var err error
	for range 3 {
		var acked int64
		v, acked, err = b.publishWait(ctx, wallName, args)
		switch {
		case err == nil:
			if a, _ := v.([]any); len(a) > 3 && a[3] == int64(1) && acked < 1 {
				b.noteUnreplicated(wallName)
			}
			return v, nil
		case strings.Contains(err.Error(), "Function not found"):
			if err := b.loadLibrary(ctx); err != nil {
				return nil, err
			}
		case strings.HasPrefix(err.Error(), "MOVED ") || strings.HasPrefix(err.Error(), "ASK "):
			if b.cluster != nil {
				// ForEachMaster reloads the slots before it returns.
				_ = b.cluster.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil })
			}
		default:
			var re redis.Error
			if !errors.As(err, &re) {
				b.reloadTopology()
			}
			return nil, err
		}
	}
	return nil, err
}

// publishWait sends wall_publish and WAIT in one pipeline on one
// connection to the wall's master, and returns the function's reply and
// how many replicas acknowledged it.
func (b *Broker) publishWait(ctx context.Context, wallName string, args []any) (any, int64, error) {
	var node redis.Cmdable = b.client
	if b.cluster != nil {
		c, err := b.cluster.MasterForKey(ctx, b.key(wallName))
		if err != nil {
			return nil, 0, err
		}
		node = c
	}
	var fc, wc *redis.Cmd
	_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		fc = p.FCall(ctx, "wall_publish", []string{b.key(wallName)}, args...)
		wc = p.Do(ctx, "WAIT", 1, b.cfg.WaitReplica.Milliseconds())
		return nil
	})
	v, err := fc.Result()
	acked, _ := wc.Int64()
	return v, acked, err
}

// noteUnreplicated counts a post answered before any replica acknowledged
// it within WaitReplica, and logs it, at most once per
// unreplicatedLogEvery.
func (b *Broker) noteUnreplicated(wallName string) {
	n := b.unreplicated.Add(1)
	now := time.Now().UnixNano()
	last := b.unreplicatedLogAt.Load()
	if now-last < int64(unreplicatedLogEvery) || !b.unreplicatedLogAt.CompareAndSwap(last, now) {
		return
	}
	b.log.Warn("a post was answered before a replica acknowledged it; a failover now may lose it",
		"wall", wall.LogName(wallName), "wait", b.cfg.WaitReplica, "unreplicated_total", n)
}
