package redisbroker

import (
	"context"
	"sync"
	"time"
	"wall/wall"
)

// This file holds the subscription manager, one of Run's goroutines and
// the only one that decides what is subscribed where. It routes each
// followed wall to the link of the node that serves it (the one link on a
// single Redis), keeps the links connected, moves walls when the
// cluster's topology changes, and drops the walls whose linger is over.
// It makes no Redis call: each link's goroutine makes that link's
// (linkloop.go), and a goroutine of its own reloads the cluster's slot
// map when a node says it changed (cluster.go). So a node that stalls
// delays only the subscriptions of the walls it serves; the others are
// subscribed, confirmed and dropped as they come.
//
// A wall's subscription is "live" once its node confirmed it. Only then
// does the wall's history tell everything the stream will not: any message
// published after the confirmation arrives on the stream, any before is in
// the history, and the applier drops what it already has by seq. So every
// confirmation (first subscription, reconnection, move) marks the wall
// dirty for the applier to read what it lacks.

// Manager tuning.
const (
	manageTick     = 100 * time.Millisecond // reconnects, retries
	expireEvery    = time.Second            // linger sweep, or Linger/2 if shorter
	routeEvery     = 2 * time.Second        // cluster: every wall's route checked against the topology
	unconfirmedFor = 500 * time.Millisecond // a subscribe unanswered this long is routed and sent again
)

// manager is the state of the manager goroutine; nothing else touches it.
type manager struct {
	b     *Broker
	sv    *supervisor
	links map[string]*link // by node address
	wg    sync.WaitGroup   // the links' goroutines, the topology reloads

	topo topoReloads // walls and links waiting for a reload of the slot map

	expireAt time.Time // next linger sweep
	routeAt  time.Time // next check of every wall's route (cluster)
}

// manageLoop runs the manager until ctx is done, then ends every link's
// goroutine (which closes its connection and waits for its readers) and
// waits for them and any topology reload. Must only run as Run's manager
// goroutine.
func (b *Broker) manageLoop(ctx context.Context, sv *supervisor) {
	m := &manager{b: b, sv: sv, links: make(map[string]*link)}
	m.topo.done = make(chan struct{})
	defer m.wg.Wait()
	defer func() {
		for _, l := range m.links {
			m.closeLink(l)
		}
	}()
	tick := time.NewTicker(manageTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.subKick:
		case ev := <-b.linkEv:
			m.handle(ctx, ev)
		case <-m.topo.done:
			m.reloaded(ctx)
		case now := <-tick.C:
			m.periodic(ctx, now)
		}
		m.subscribePending(ctx)
	}
}

// handle acts on an event of a link's goroutine or reader.
func (m *manager) handle(ctx context.Context, ev linkEvent) {
	l := ev.l
	if m.links[l.addr] != l || ev.gen != l.gen || !l.up {
		return // a connection closed since
	}
	b := m.b
	switch ev.kind {
	case evSubscribed:
		b.fol.Lock()
		f := b.fol.walls[ev.wall]
		confirmed := f != nil && f.link == l && !f.live
		if confirmed {
			f.setLive(true)
			l.fails = 0
		}
		b.fol.Unlock()
		if confirmed && b.hub.Lookup(ev.wall) != nil {
			b.markDirty(ev.wall) // read what was published before the subscription
		}
	case evUnsubscribed:
		ch := b.channel(ev.wall)
		if l.unsubs[ch] > 0 {
			if l.unsubs[ch]--; l.unsubs[ch] == 0 {
				delete(l.unsubs, ch)
			}
			return
		}
		// The node dropped the subscription itself: the wall's slot moved
		// to another node. It is routed again once the slot map is
		// reloaded, so that it goes to the new owner at once.
		b.log.Info("redis dropped a wall's subscription (slot moved); moving it", "wall", wall.LogName(ev.wall), "node", l.addr)
		b.fol.Lock()
		f := b.fol.walls[ev.wall]
		moved := f != nil && f.link == l
		if moved {
			m.unlinkLocked(ev.wall, f, false)
		}
		b.fol.Unlock()
		if moved {
			m.afterReload(ctx, ev.wall, nil)
		}
	case evReply:
		// An error reply to a subscribe (MOVED after a topology change):
		// once the slot map is reloaded, the link's unconfirmed walls are
		// routed and sent again.
		b.log.Debug("redis pub/sub error reply", "node", l.addr, "err", ev.err)
		m.afterReload(ctx, "", l)
	case evConnected:
		m.connected(l)
	case evDown:
		m.down(ctx, l, ev.err)
	}
}

// periodic reconnects links whose backoff is over, sends again the
// subscribes left unconfirmed, checks routes and drops expired walls.
func (m *manager) periodic(ctx context.Context, now time.Time) {
	b := m.b
	if b.cluster != nil && !now.Before(m.routeAt) {
		m.routeAt = now.Add(routeEvery)
		m.reroute(ctx, nil)
	}
	m.retryUnconfirmed(ctx, nil, unconfirmedFor)
	for _, l := range m.links {
		if !l.up && !now.Before(l.retryAt) {
			if b.cluster != nil {
				m.reroute(ctx, keys(l.walls)) // after a failover its walls are elsewhere
			}
			if len(l.walls) > 0 {
				m.connect(ctx, l)
			}
		}
	}
	if !now.Before(m.expireAt) {
		m.expireAt = now.Add(min(expireEvery, b.cfg.Linger/2))
		m.expire(ctx, now)
	}
	m.closeEmpty()
}

// retryUnconfirmed routes again and resends the subscribes sent at least
// olderThan ago and still unconfirmed, on link only (nil: on every link),
// of links whose connection is up.
func (m *manager) retryUnconfirmed(ctx context.Context, only *link, olderThan time.Duration) {
	b := m.b
	now := time.Now()
	var stale []string
	b.fol.Lock()
	for _, l := range m.links {
		if !l.connected || (only != nil && l != only) {
			continue
		}
		for name := range l.walls {
			if f := b.fol.walls[name]; f != nil && !f.live && now.Sub(f.sentAt) >= olderThan {
				stale = append(stale, name)
			}
		}
	}
	b.fol.Unlock()
	if len(stale) == 0 {
		return
	}
	m.reroute(ctx, stale) // on a cluster, where the topology says now
	for _, name := range stale {
		m.resend(name)
	}
}

// subscribePending routes the walls that have no link and subscribes them.
func (m *manager) subscribePending(ctx context.Context) {
	b := m.b
	b.fol.Lock()
	if len(b.fol.pending) == 0 {
		b.fol.Unlock()
		return
	}
	names := keys(b.fol.pending)
	b.fol.Unlock()
	for _, name := range names {
		addr, node, err := b.route(ctx, b.channel(name))
		if err != nil {
			b.log.Debug("redis: cannot route a wall yet", "wall", name, "err", err)
			b.reloadTopology()
			continue // still pending: retried at the next event or tick
		}
		l := m.links[addr]
		if l == nil {
			l = m.newLink(ctx, addr, node)
			m.links[addr] = l
		}
		b.fol.Lock()
		f := b.fol.walls[name]
		if f == nil || f.link != nil {
			b.fol.Unlock()
			continue
		}
		delete(b.fol.pending, name)
		f.link, f.sentAt = l, time.Now()
		l.walls[name] = struct{}{}
		b.fol.Unlock()
		switch {
		case l.up:
			m.subscribe(l, name)
		case !time.Now().Before(l.retryAt):
			m.connect(ctx, l) // subscribes every wall of the link
		}
	}
}

// expire stops following the walls whose linger is over and that the hub
// could evict (no user came back), and unsubscribes them.
func (m *manager) expire(ctx context.Context, now time.Time) {
	b := m.b
	type unsub struct {
		l    *link
		name string
	}
	var unsubs []unsub
	b.fol.Lock()
	for name, f := range b.fol.walls {
		if f.users || now.Sub(f.idleAt) < b.cfg.Linger {
			continue
		}
		// Evicted under the follows lock: a user arriving now waits in
		// WallActive and follows the wall anew, on a new, empty wall.
		if !b.hub.Evict(name) {
			continue
		}
		delete(b.fol.walls, name)
		delete(b.fol.pending, name)
		if l := f.link; l != nil {
			delete(l.walls, name)
			if l.up {
				unsubs = append(unsubs, unsub{l, name})
			}
		}
	}
	b.fol.Unlock()
	for _, u := range unsubs {
		m.unsubscribe(u.l, u.name)
	}
}

// closeEmpty closes and forgets the links that carry no wall.
func (m *manager) closeEmpty() {
	for addr, l := range m.links {
		if len(l.walls) == 0 {
			m.closeLink(l)
			delete(m.links, addr)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
