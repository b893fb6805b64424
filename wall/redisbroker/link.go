package redisbroker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the link, one pub/sub connection to one Redis node that
// carries the subscriptions of the followed walls the node serves: its
// reader goroutine, which only parses what arrives and hands it on, never
// blocking on the applier, and the manager's operations on it (connect,
// subscribe, unsubscribe, down).
//
// Each connection is one go-redis PubSub, used for its life only: when it
// fails, the manager closes it and opens a new one on which it subscribes
// every wall again, one command per wall. go-redis would reconnect a
// PubSub by itself, but it resubscribes all of its shard channels in one
// SSUBSCRIBE, which a cluster node refuses (CROSSSLOT) when they hash to
// several slots, as a node's walls do.

// link is one pub/sub connection (the current generation of it) to one
// Redis node. It is owned by the manager: only the manager reads or
// writes its fields; the reader gets what it needs as arguments.
type link struct {
	addr string        // the node's address; "" for the one link to a single Redis
	node *redis.Client // the node's client, on a cluster (nil: the broker's client)

	ps      *redis.PubSub       // the current connection; nil while down
	gen     int                 // generation of ps; events of older ones are ignored
	stop    chan struct{}       // closed to end the current generation's reader
	walls   map[string]struct{} // walls routed to the node, subscribed or to be
	unsubs  map[string]int      // our unsubscribes not yet confirmed, per channel
	fails   int                 // consecutive failures, for the backoff
	retryAt time.Time           // when a down link reconnects
}

// linkEvent is what a reader tells the manager.
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
)

// readLoop receives from one connection of link l until it fails, stop is
// closed or ctx is done. Messages go to the applier's queue without
// blocking: when the queue is full the wall is marked dirty and refilled
// from the Redis history later. Subscriptions and failures go to the
// manager. Must only run as a reader goroutine started by the manager.
func (b *Broker) readLoop(ctx context.Context, l *link, ps *redis.PubSub, gen int, stop <-chan struct{}) {
	report := func(ev linkEvent) bool {
		ev.l, ev.gen = l, gen
		select {
		case b.linkEv <- ev:
			return true
		case <-stop:
		case <-ctx.Done():
		}
		return false
	}
	pinged := false // a health-check ping is unanswered
	for {
		v, err := ps.ReceiveTimeout(ctx, redisPingEvery)
		select {
		case <-stop:
			return
		default:
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var re redis.Error
			var ne net.Error
			switch {
			case errors.As(err, &re):
				if !report(linkEvent{kind: evReply, err: err}) {
					return
				}
				continue
			case errors.As(err, &ne) && ne.Timeout() && !pinged:
				pinged = true
				_ = ps.Ping(ctx)
				continue
			}
			// Closed, reset, refused, or no answer to a ping: the
			// connection is dead, whether or not it knows it.
			report(linkEvent{kind: evDown, err: err})
			return
		}
		pinged = false
		switch m := v.(type) {
		case *redis.Subscription:
			kind := evSubscribed
			if m.Kind == "unsubscribe" || m.Kind == "sunsubscribe" {
				kind = evUnsubscribed
			}
			if !report(linkEvent{kind: kind, wall: b.wallOf(m.Channel)}) {
				return
			}
		case *redis.Message:
			if b.panicHook != nil {
				b.panicHook("reader")
			}
			if b.dropPubSub.Load() {
				continue
			}
			b.received.Add(1)
			e, err := parsePayload(m.Payload)
			if err != nil {
				b.log.Warn("redis: ignoring malformed message", "channel", m.Channel, "err", err)
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

// connect opens a new connection for l and subscribes every wall of the
// link on it, one command each, then starts its reader.
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
		l.ps = l.node.SSubscribe(ctx)
	} else {
		l.ps = b.client.Subscribe(ctx)
	}
	l.gen++
	l.stop = make(chan struct{})
	l.unsubs = make(map[string]int)
	now := time.Now()
	b.fol.Lock()
	for name := range l.walls {
		if f := b.fol.walls[name]; f != nil {
			f.sentAt = now
		}
	}
	b.fol.Unlock()
	for name := range l.walls {
		if err := m.subscribe(ctx, l, name); err != nil {
			level := slog.LevelWarn
			if l.fails > 0 {
				level = slog.LevelDebug // logged once per outage
			}
			b.log.Log(ctx, level, "redis pub/sub connect failed; retrying", "node", l.addr, "err", err)
			m.down(l)
			return
		}
	}
	ps, gen, stop := l.ps, l.gen, l.stop
	m.wg.Go(m.sv.guard(ctx, "reader", func(ctx context.Context) { b.readLoop(ctx, l, ps, gen, stop) }))
	b.log.Debug("redis pub/sub connected", "node", l.addr, "walls", len(l.walls))
}

// subscribe sends the subscribe command for one wall on l's connection.
func (m *manager) subscribe(ctx context.Context, l *link, name string) error {
	if m.b.subscribeDelay > 0 {
		time.Sleep(m.b.subscribeDelay)
	}
	ctx, cancel := context.WithTimeout(ctx, m.b.cfg.Timeout)
	defer cancel()
	if m.b.cluster != nil {
		return l.ps.SSubscribe(ctx, m.b.channel(name))
	}
	return l.ps.Subscribe(ctx, m.b.channel(name))
}

// unsubscribe sends the unsubscribe command for one wall on l's
// connection; its confirmation is expected (not taken for the node's).
func (m *manager) unsubscribe(ctx context.Context, l *link, name string) {
	ch := m.b.channel(name)
	l.unsubs[ch]++
	ctx, cancel := context.WithTimeout(ctx, m.b.cfg.Timeout)
	defer cancel()
	var err error
	if m.b.cluster != nil {
		err = l.ps.SUnsubscribe(ctx, ch)
	} else {
		err = l.ps.Unsubscribe(ctx, ch)
	}
	if err != nil {
		m.b.log.Warn("redis pub/sub unsubscribe failed; reconnecting", "node", l.addr, "err", err)
		m.down(l)
	}
}

// resend sends a wall's subscribe again on its link, if the link is up.
func (m *manager) resend(ctx context.Context, name string) {
	b := m.b
	b.fol.Lock()
	f := b.fol.walls[name]
	if f == nil || f.link == nil || f.link.ps == nil || f.live {
		b.fol.Unlock()
		return
	}
	l := f.link
	f.sentAt = time.Now()
	b.fol.Unlock()
	if err := m.subscribe(ctx, l, name); err != nil {
		m.down(l)
	}
}

// down closes l's connection after a failure; its walls are not live
// until a new connection, after a backoff, confirms them again.
func (m *manager) down(l *link) {
	if l.ps == nil {
		return
	}
	m.closeConn(l)
	l.fails++
	backoff := min(50*time.Millisecond<<min(l.fails-1, 5), redisMaxBackoff)
	l.retryAt = time.Now().Add(backoff)
	m.b.reloadTopology()
}

// closeConn ends l's current connection and reader and marks its walls not
// live.
func (m *manager) closeConn(l *link) {
	if l.ps == nil {
		return
	}
	close(l.stop)
	_ = l.ps.Close() // ends the reader's Receive
	l.ps = nil
	m.b.fol.Lock()
	for name := range l.walls {
		if f := m.b.fol.walls[name]; f != nil {
			f.setLive(false)
		}
	}
	m.b.fol.Unlock()
}
