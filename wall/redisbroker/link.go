package redisbroker

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the link, one pub/sub connection to one Redis node that
// carries the subscriptions of the followed walls the node serves, as the
// manager sees it, and the manager's operations on it (connect,
// subscribe, unsubscribe, down). They only decide and record: the Redis
// calls are orders on the link's queue, carried out by the link's own
// goroutine (linkloop.go), so the manager never waits for a node.
//
// Each connection is one go-redis PubSub, used for its life only: when it
// fails, the manager closes it and opens a new one on which it subscribes
// every wall again, one command per wall. go-redis would reconnect a
// PubSub by itself, but it resubscribes all of its shard channels in one
// SSUBSCRIBE, which a cluster node refuses (CROSSSLOT) when they hash to
// several slots, as a node's walls do.

// link is one pub/sub connection (the current generation of it) to one
// Redis node. Its fields are owned by the manager: only the manager reads
// or writes them; the link's goroutine and readers get what they need
// through q and as arguments.
type link struct {
	addr string        // the node's address; "" for the one link to a single Redis
	node *redis.Client // the node's client, on a cluster (nil: the broker's client)
	q    *linkQueue    // orders for the link's goroutine

	up        bool                // connection gen is open or being opened; false while down
	connected bool                // gen's first subscribe went out: its reader runs
	gen       int                 // generation of the connection; events of older ones are ignored
	walls     map[string]struct{} // walls routed to the node, subscribed or to be
	unsubs    map[string]int      // our unsubscribes not yet confirmed, per channel
	fails     int                 // consecutive failures, for the backoff
	retryAt   time.Time           // when a down link reconnects
}

// linkEvent is what a link's goroutine or reader tells the manager.
type linkEvent struct {
	l    *link
	gen  int
	kind eventKind
	wall string // evSubscribed, evUnsubscribed
	err  error  // evReply, evDown
}

type eventKind int

const (
	evSubscribed   eventKind = iota // a subscribe confirmed: messages of the wall follow
	evUnsubscribed                  // an unsubscribe, ours or the node's (its slot moved away)
	evReply                         // an error reply (MOVED, CROSSSLOT...), the connection is fine
	evDown                          // the connection failed or stopped answering
	evConnected                     // the connection is up: its first subscribe went out
)

// newLink makes the link to a node and starts its goroutine.
func (m *manager) newLink(ctx context.Context, addr string, node *redis.Client) *link {
	l := &link{addr: addr, node: node, q: newLinkQueue(), walls: make(map[string]struct{})}
	q := l.q
	m.wg.Go(m.sv.guard(ctx, "link", func(ctx context.Context) { m.b.linkLoop(ctx, m.sv, l, q) }))
	return l
}

// connect has the link's goroutine open a new connection and subscribe
// every wall of the link on it, one command each.
func (m *manager) connect(ctx context.Context, l *link) {
	b := m.b
	if b.cluster != nil {
		// The node's client as go-redis holds it now: it closes the
		// client of a node that left the cluster, and makes a new one if
		// the address comes back.
		for name := range l.walls {
			if addr, node, err := b.route(ctx, b.channel(name)); err == nil && addr == l.addr {
				l.node = node
			}
			break
		}
	}
	l.gen++
	l.up, l.connected = true, false
	l.unsubs = make(map[string]int)
	l.q.push(linkOp{kind: opOpen, gen: l.gen, node: l.node})
	now := time.Now()
	b.fol.Lock()
	for name := range l.walls {
		if f := b.fol.walls[name]; f != nil {
			f.sentAt = now
		}
	}
	b.fol.Unlock()
	for name := range l.walls {
		m.subscribe(l, name)
	}
}

// connected records that l's connection is up. The subscribes sent
// before count from now: they may have waited for the connection.
func (m *manager) connected(l *link) {
	l.connected = true
	now := time.Now()
	m.b.fol.Lock()
	for name := range l.walls {
		if f := m.b.fol.walls[name]; f != nil && !f.live {
			f.sentAt = now
		}
	}
	m.b.fol.Unlock()
	m.b.log.Debug("redis pub/sub connected", "node", l.addr, "walls", len(l.walls))
}

// subscribe has the subscribe command for one wall sent on l's
// connection. A failure comes back as evDown.
func (m *manager) subscribe(l *link, name string) {
	l.q.push(linkOp{kind: opSub, gen: l.gen, wall: name})
}

// unsubscribe has the unsubscribe command for one wall sent on l's
// connection; its confirmation is expected (not taken for the node's).
func (m *manager) unsubscribe(l *link, name string) {
	l.unsubs[m.b.channel(name)]++
	l.q.push(linkOp{kind: opUnsub, gen: l.gen, wall: name})
}

// resend sends a wall's subscribe again on its link, if the link is up.
func (m *manager) resend(name string) {
	b := m.b
	b.fol.Lock()
	f := b.fol.walls[name]
	if f == nil || f.link == nil || !f.link.up || f.live {
		b.fol.Unlock()
		return
	}
	l := f.link
	f.sentAt = time.Now()
	b.fol.Unlock()
	m.subscribe(l, name)
}

// down closes l's connection after a failure; its walls are not live
// until a new connection, after a backoff, confirms them again.
func (m *manager) down(ctx context.Context, l *link, err error) {
	if !l.up {
		return
	}
	level := slog.LevelWarn
	if l.fails > 0 {
		level = slog.LevelDebug // logged once per outage
	}
	m.b.log.Log(ctx, level, "redis pub/sub connection failed; reconnecting", "node", l.addr, "walls", len(l.walls), "err", err)
	m.closeConn(l)
	l.fails++
	backoff := min(50*time.Millisecond<<min(l.fails-1, 5), redisMaxBackoff)
	l.retryAt = time.Now().Add(backoff)
	m.b.reloadTopology()
}

// closeConn has l's current connection closed, with its reader, and
// marks its walls not live. Its orders not yet carried out are dropped.
func (m *manager) closeConn(l *link) {
	if !l.up {
		return
	}
	l.q.cancel(l.gen)
	l.q.push(linkOp{kind: opClose, gen: l.gen})
	l.up, l.connected = false, false
	m.b.fol.Lock()
	for name := range l.walls {
		if f := m.b.fol.walls[name]; f != nil {
			f.setLive(false)
		}
	}
	m.b.fol.Unlock()
}

// closeLink closes l's connection and ends its goroutine.
func (m *manager) closeLink(l *link) {
	m.closeConn(l)
	l.q.stop()
}
