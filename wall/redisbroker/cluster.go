package redisbroker

import (
	"context"
	"fmt"
	"time"

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
		m.unlinkLocked(name, f, true)
		b.fol.Unlock()
		b.log.Info("redis: wall moved to another node", "wall", wall.LogName(name), "from", old.addr, "to", addr)
		if old.up {
			m.unsubscribe(old, name)
		}
	}
}

// unlinkLocked takes wall name off its link and, if pending, makes it
// pending (else the caller routes it later). The follows lock must be
// held.
func (m *manager) unlinkLocked(name string, f *follow, pending bool) {
	delete(f.link.walls, name)
	f.link = nil
	f.setLive(false)
	if pending {
		m.b.fol.pending[name] = struct{}{}
	}
}

// topoReloads is the manager's reloads of the cluster's slot map, asked
// for when a node says a slot moved: one at a time, on a goroutine of
// their own (a reload asks some node, which may be the stalled one), as
// the history readers read a wall. What waits for a reload is released by
// the first one that started after it was asked for: the one asked, or if
// one was running, the next.
type topoReloads struct {
	running   bool
	cur, next topoWaiters   // released by the running reload; by the one after it
	done      chan struct{} // the running reload -> manager
	lastAt    time.Time     // when the last reload ended
}

// topoWaiters is what waits for a reload: walls to route again (unlinked,
// not pending meanwhile), links whose unconfirmed walls are to be routed
// and sent again.
type topoWaiters struct {
	walls []string
	links []*link
}

func (w topoWaiters) empty() bool { return len(w.walls) == 0 && len(w.links) == 0 }

// afterReload has wall name (if not "") routed again, or l's (if not nil)
// unconfirmed walls routed and sent again, after a reload of the slot
// map that starts from now.
func (m *manager) afterReload(ctx context.Context, name string, l *link) {
	t := &m.topo
	w := &t.cur
	if t.running {
		w = &t.next
	}
	if name != "" {
		w.walls = append(w.walls, name)
	}
	if l != nil {
		w.links = append(w.links, l)
	}
	if !t.running {
		m.startReload(ctx)
	}
}

// startReload reloads the slot map on a goroutine, at most every
// manageTick, and tells the manager on topo.done when it has.
func (m *manager) startReload(ctx context.Context) {
	t := &m.topo
	t.running = true
	wait := time.Until(t.lastAt.Add(manageTick))
	b, done := m.b, t.done
	m.wg.Go(m.sv.guard(ctx, "topology", func(ctx context.Context) {
		if wait > 0 {
			timer := time.NewTimer(wait)
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		rctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
		b.reloadTopologyNow(rctx)
		cancel()
		select {
		case done <- struct{}{}:
		case <-ctx.Done():
		}
	}))
}

// reloaded releases what waited for the reload that ended, and starts the
// next one if something waits for it.
func (m *manager) reloaded(ctx context.Context) {
	b := m.b
	t := &m.topo
	t.running, t.lastAt = false, time.Now()
	w := t.cur
	t.cur, t.next = t.next, topoWaiters{}
	if !t.cur.empty() {
		m.startReload(ctx)
	}
	b.fol.Lock()
	for _, name := range w.walls {
		if f := b.fol.walls[name]; f != nil && f.link == nil {
			b.fol.pending[name] = struct{}{}
		}
	}
	b.fol.Unlock()
	for _, l := range w.links {
		if m.links[l.addr] == l {
			m.retryUnconfirmed(ctx, l, 0)
		}
	}
}
