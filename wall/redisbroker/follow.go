package redisbroker

import (
	"context"
	"sort"
	"sync"
	"time"
)

// This file holds which walls this instance follows, kept from the hub's
// Interest calls: a wall is followed (subscribed to, its messages applied,
// its cache kept) from its first local user until Linger after its last.
// The manager (manage.go) acts on the table; Publish and Sync wait on it.

// follow is this instance's interest in one wall and the state of the
// wall's subscription. users and idleAt are set by the Interest calls;
// link, sentAt, live and ready only by the manager; all under follows'
// lock.
type follow struct {
	users  bool      // the hub has users of the wall
	idleAt time.Time // when the last user left; the wall is followed until idleAt+Linger
	link   *link     // the connection the wall is subscribed on; nil while unrouted
	sentAt time.Time // when the subscribe was last sent on link
	live   bool      // the subscription is confirmed on link's current connection
	ready  chan struct{}
}

// follows is the table of followed walls. pending holds the followed walls
// without a link, for the manager to route and subscribe.
type follows struct {
	sync.Mutex
	walls   map[string]*follow
	pending map[string]struct{}
}

// setLive records whether f's subscription is confirmed: ready is closed
// while it is, and a new one made when it stops being. The lock must be
// held.
func (f *follow) setLive(live bool) {
	switch {
	case live && !f.live:
		close(f.ready)
	case !live && f.live:
		f.ready = make(chan struct{})
	}
	f.live = live
}

// WallActive implements wall.Interest: wall name has local users. The
// wall is followed from now on: the manager subscribes to it.
func (b *Broker) WallActive(name string) {
	b.fol.Lock()
	f := b.fol.walls[name]
	if f == nil {
		f = &follow{ready: make(chan struct{})}
		b.fol.walls[name] = f
		b.fol.pending[name] = struct{}{}
	}
	f.users = true
	b.fol.Unlock()
	b.wakeManager()
}

// WallIdle implements wall.Interest: wall name has no local user left. It
// is followed for Linger more, then dropped with its cache.
func (b *Broker) WallIdle(name string) {
	b.fol.Lock()
	if f := b.fol.walls[name]; f != nil {
		f.users, f.idleAt = false, time.Now()
	}
	b.fol.Unlock()
}

// Served returns the walls this instance has local users of, sorted.
// Lingering walls (followed, without users) are not among them.
func (b *Broker) Served() []string {
	b.fol.Lock()
	defer b.fol.Unlock()
	var names []string
	for n, f := range b.fol.walls {
		if f.users {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// awaitLive waits until wall's subscription is confirmed, at most
// redisLiveWait, and reports whether it is. A wall read from the history
// once its subscription is confirmed misses nothing: every later message
// comes by pub/sub. Past the wait (Redis slow or away) the caller goes on
// without: the periodic check fills what the stream missed.
func (b *Broker) awaitLive(ctx context.Context, wallName string) bool {
	b.fol.Lock()
	f := b.fol.walls[wallName]
	if f == nil || f.live {
		b.fol.Unlock()
		return f != nil
	}
	ready := f.ready
	b.fol.Unlock()
	t := time.NewTimer(redisLiveWait)
	defer t.Stop()
	select {
	case <-ready:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-b.stopped:
	}
	return false
}

// wakeManager tells the manager there is work, without blocking.
func (b *Broker) wakeManager() {
	select {
	case b.subKick <- struct{}{}:
	default:
	}
}
