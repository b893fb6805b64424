package redisbroker

import (
	"context"
	"fmt"
	"wall/wall"

	"github.com/redis/go-redis/v9"
)

// This file holds what differs on a Redis Cluster: which node a wall's
// subscription goes to and moving it when that changes, loading the
// function library on every master, and telling go-redis that the
// topology may have changed.
//
// go-redis's ClusterClient routes commands (FCALL, the check's pipeline)
// by key and follows MOVED and ASK itself; its view of the slots is what
// route uses for pub/sub too. That view is reloaded after a MOVED reply to
// a command, every 60 s by default, and whenever the broker sees a sign of
// change (a pub/sub connection lost, an error reply to a subscribe, a
// subscription dropped by its node, a command that could not reach its
// node), so after a failover both the commands and the subscriptions reach
// the promoted replica as soon as the cluster knows it.

// route returns where a wall's channel is subscribed: on a single Redis
// the one link (""); on a cluster the address and client of the master
// that serves the channel's slot (the slot of the wall's keys).
func (b *Broker) route(ctx context.Context, ch string) (string, *redis.Client, error) {
	if b.cluster == nil {
		return "", nil, nil
	}
	node, err := b.cluster.MasterForKey(ctx, ch)
	if err != nil {
		return "", nil, err
	}
	return node.Options().Addr, node, nil
}

// loadLibrary loads the function library: on every master of a cluster
// (replicas get it by replication), or on the single Redis.
func (b *Broker) loadLibrary(ctx context.Context) error {
	var err error
	if b.cluster != nil {
		// ForEachMaster reloads the topology first: a node promoted or
		// added since is included.
		err = b.cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			if err := node.FunctionLoadReplace(ctx, b.lib).Err(); err != nil {
				return fmt.Errorf("%s: %w", node.Options().Addr, err)
			}
			return nil
		})
	} else {
		err = b.client.FunctionLoadReplace(ctx, b.lib).Err()
	}
	if err != nil {
		return fmt.Errorf("loading the wall function library: %w", err)
	}
	return nil
}

// reloadTopologyNow reloads the cluster's slots before it returns (go-redis
// does it at the start of ForEachMaster); a no-op on a single Redis.
func (b *Broker) reloadTopologyNow(ctx context.Context) {
	if b.cluster != nil {
		_ = b.cluster.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil })
	}
}

// reloadTopology asks go-redis to reload the cluster's slots in the
// background; a no-op on a single Redis.
func (b *Broker) reloadTopology() {
	if b.cluster != nil {
		b.cluster.ReloadState(context.Background())
	}
}

// reroute checks the route of the named walls (nil: every followed wall)
// against the cluster's topology and moves those now served by another
// node: unsubscribed from the old link, pending for the new one. A no-op
// on a single Redis.
func (m *manager) reroute(ctx context.Context, names []string) {
	b := m.b
	if b.cluster == nil {
		return
	}
	if names == nil {
		b.fol.Lock()
		names = keys(b.fol.walls)
		b.fol.Unlock()
	}
	for _, name := range names {
		addr, _, err := b.route(ctx, b.channel(name))
		if err != nil {
			continue
		}
		b.fol.Lock()
		f := b.fol.walls[name]
		if f == nil || f.link == nil || f.link.addr == addr {
			b.fol.Unlock()
			continue
		}
		old := f.link
		m.unlinkLocked(name, f)
		b.fol.Unlock()
		b.log.Info("redis: wall moved to another node", "wall", wall.LogName(name), "from", old.addr, "to", addr)
		if old.ps != nil {
			m.unsubscribe(ctx, old, name)
		}
	}
}

// unlinkLocked takes wall name off its link and makes it pending. The
// follows lock must be held.
func (m *manager) unlinkLocked(name string, f *follow) {
	delete(f.link.walls, name)
	f.link = nil
	f.setLive(false)
	m.b.fol.pending[name] = struct{}{}
}
