package redisbroker

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the link's goroutine, which makes every Redis call of
// one link, and the reader of each of its connections. The manager
// decides and never waits for Redis: it puts its orders for a link
// (open a connection, subscribe, unsubscribe, close) on the link's queue
// and goes on. The link's goroutine carries them out in the order given,
// each call bounded by Config.Timeout, and tells the manager what came of
// them through the readers' channel. A node that stalls holds only its
// own link's goroutine, and with it only the subscriptions of its walls.

// opKind is an order of the manager to a link's goroutine.
type opKind int

const (
	opOpen  opKind = iota // start connection gen (closing any older one); it connects at its first subscribe
	opSub                 // subscribe wall on connection gen
	opUnsub               // unsubscribe wall on connection gen
	opClose               // close connection gen
)

// linkOp is one order. Orders for a connection other than the one the
// goroutine has open (closed, or failed) are skipped.
type linkOp struct {
	kind opKind
	gen  int
	wall string
	node *redis.Client // opOpen on a cluster: the node's client
}

// linkQueue is the orders waiting for a link's goroutine. The manager
// adds to it without blocking. It is unbounded but stays short: it holds
// the orders of one connection at a time (the manager drops a
// connection's orders when it closes it), about one per wall of the link
// and change of it, since the manager sends a subscribe again only on a
// connection that is up and at most every unconfirmedFor.
type linkQueue struct {
	mu   sync.Mutex
	ops  []linkOp
	quit bool          // the goroutine ends once it has closed its connection
	wake chan struct{} // 1-buffered: there are orders or quit
}

func newLinkQueue() *linkQueue { return &linkQueue{wake: make(chan struct{}, 1)} }

// push adds an order.
func (q *linkQueue) push(op linkOp) {
	q.mu.Lock()
	q.ops = append(q.ops, op)
	q.mu.Unlock()
	q.kick()
}

// cancel drops the orders for connection gen not yet taken: the manager
// closed it, so they would only hold the link up.
func (q *linkQueue) cancel(gen int) {
	q.mu.Lock()
	kept := q.ops[:0]
	for _, op := range q.ops {
		if op.gen != gen {
			kept = append(kept, op)
		}
	}
	clear(q.ops[len(kept):])
	q.ops = kept
	q.mu.Unlock()
}

// stop tells the goroutine to close its connection and end.
func (q *linkQueue) stop() {
	q.mu.Lock()
	q.quit = true
	q.mu.Unlock()
	q.kick()
}

func (q *linkQueue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns the orders waiting, and whether to end.
func (q *linkQueue) take() ([]linkOp, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ops := q.ops
	q.ops = nil
	return ops, q.quit
}

// linkConn is the connection a link's goroutine has open.
type linkConn struct {
	ps      *redis.PubSub
	gen     int
	reading bool          // its reader runs
	stop    chan struct{} // closed to end its reader
}

// linkLoop is the goroutine of link l: it carries out the orders on q
// until told to stop or ctx is done, then closes its connection and waits
// for its readers. Must only run as a link goroutine started by the
// manager; it touches none of l's fields (l names the link in events).
func (b *Broker) linkLoop(ctx context.Context, sv *supervisor, l *link, q *linkQueue) {
	var readers sync.WaitGroup
	defer readers.Wait()
	var cur *linkConn
	closeCur := func() {
		if cur != nil {
			if cur.stop != nil {
				close(cur.stop)
			}
			_ = cur.ps.Close() // ends the reader's Receive
			cur = nil
		}
	}
	defer closeCur()
	report := func(ev linkEvent) {
		ev.l = l
		select {
		case b.linkEv <- ev:
		case <-ctx.Done():
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		ops, quit := q.take()
		for _, op := range ops {
			if ctx.Err() != nil {
				return
			}
			switch {
			case op.kind == opOpen:
				closeCur()
				cur = &linkConn{gen: op.gen}
				if op.node != nil {
					cur.ps = op.node.SSubscribe(ctx)
				} else {
					cur.ps = b.client.Subscribe(ctx)
				}
			case cur == nil || cur.gen != op.gen:
				// An order for a connection closed since.
			case op.kind == opClose:
				closeCur()
			default:
				if err := b.linkCall(ctx, cur.ps, op); err != nil {
					// Closed at once, so that go-redis does not
					// reconnect it; the manager opens the next one.
					closeCur()
					report(linkEvent{gen: op.gen, kind: evDown, err: err})
					continue
				}
				if !cur.reading {
					// Its first call went through: the connection is
					// up; its reader takes the replies from now on.
					cur.reading, cur.stop = true, make(chan struct{})
					ps, gen, stop := cur.ps, cur.gen, cur.stop
					readers.Go(sv.guard(ctx, "reader", func(ctx context.Context) { b.readLoop(ctx, l, ps, gen, stop) }))
					report(linkEvent{gen: op.gen, kind: evConnected})
				}
			}
		}
		if quit {
			return
		}
	}
}

// linkCall sends one subscribe or unsubscribe on ps; the first one
// connects it.
func (b *Broker) linkCall(ctx context.Context, ps *redis.PubSub, op linkOp) error {
	ch := b.channel(op.wall)
	if op.kind == opSub && b.subscribeDelay > 0 {
		time.Sleep(b.subscribeDelay)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	switch {
	case op.kind == opSub && b.cluster != nil:
		return ps.SSubscribe(ctx, ch)
	case op.kind == opSub:
		return ps.Subscribe(ctx, ch)
	case b.cluster != nil:
		return ps.SUnsubscribe(ctx, ch)
	default:
		return ps.Unsubscribe(ctx, ch)
	}
}

// readLoop receives from one connection of link l until it fails, stop is
// closed or ctx is done. Messages go to the applier's queue without
// blocking: when the queue is full the wall is marked dirty and refilled
// from the Redis history later. Subscriptions and failures go to the
// manager. Must only run as a reader goroutine started by l's goroutine.
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
