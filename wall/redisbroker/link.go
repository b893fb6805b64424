package redisbroker

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the link, one pub/sub connection to one Redis node that
// carries the subscriptions of the followed walls the node serves, and its
// reader goroutine, which only parses what arrives and hands it on, never
// blocking on the applier.
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
