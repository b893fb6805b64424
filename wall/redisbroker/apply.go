package redisbroker

import (
	"context"
	"errors"
	"sync"
	"time"

	"wall/wall"
)

// This file holds the applier, one of Run's goroutines and the only writer
// of the hub's walls: it applies pub/sub messages in order, serves resync
// requests, has dirty walls read again and periodically compares the held
// walls with Redis. It makes no Redis call itself: every read goes to a
// history reader (reads.go), so a slow node delays only its own walls.

// applier is the state of the applier goroutine; nothing else touches it.
type applier struct {
	b       *Broker
	sv      *supervisor
	readers *sync.WaitGroup // the history readers, waited for by Run

	flights map[string]*flight // walls with a read queued or in flight
	lanes   map[string]*lane   // per Redis node: its reads and checks
	done    chan *job          // readers -> applier: a job's outcome

	behind map[string]uint64 // wall -> Redis seq seen ahead at the last check
}

// applyLoop is the applier: the only goroutine that writes to the hub's
// walls (their epochs included). It applies pub/sub messages in seq
// order, serves resync requests, has dirty walls read, and every
// ResyncInterval compares the held walls with Redis; the reads run on
// history readers it starts under readers, and their outcome comes back
// to it to be applied. Must only run as Run's applier goroutine.
func (b *Broker) applyLoop(ctx context.Context, sv *supervisor, readers *sync.WaitGroup) {
	ap := &applier{
		b: b, sv: sv, readers: readers,
		flights: make(map[string]*flight),
		lanes:   make(map[string]*lane),
		done:    make(chan *job),
		behind:  make(map[string]uint64),
	}
	tick := time.NewTicker(b.cfg.ResyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-b.msgs:
			ap.applyEvent(ctx, e)
		case r := <-b.reqs:
			ap.request(ctx, r)
		case j := <-ap.done:
			ap.finish(ctx, j)
		case <-b.kick:
			ap.readDirty(ctx)
		case <-tick.C:
			ap.readDirty(ctx)
			ap.check(ctx)
		}
	}
}

// applyEvent applies one message from the stream, or has its wall read
// when it does not follow the wall's last seq and epoch. A wall whose read
// is in flight is not written: its messages wait for the read's outcome.
func (ap *applier) applyEvent(ctx context.Context, e *redisEvent) {
	b := ap.b
	if b.panicHook != nil {
		b.panicHook("applier")
	}
	// Not acquired: the applier's work is not a use of the wall (it would
	// keep a lingering wall followed for ever). A wall the hub does not
	// hold (dropped empty, or evicted with its subscription on the way
	// out) is read from the history by its next user.
	w := b.hub.Lookup(e.wallName)
	if w == nil {
		return
	}
	if f := ap.flights[e.wallName]; f != nil && f.reading {
		f.hold(e)
		return
	}
	if !b.applyLive(w, e) && ap.flights[e.wallName] == nil {
		// A gap, a new epoch, or a wall this instance does not hold yet.
		// (A wall whose read is queued gets it from that read.)
		ap.want(ctx, e.wallName, nil)
	}
}

// applyLive applies e to w if it continues the wall, and reports whether
// w now holds it (applied now or before).
func (b *Broker) applyLive(w *wall.Wall, e *redisEvent) bool {
	last, ep := w.Last(), w.Epoch()
	switch {
	case ep == e.epoch && e.seq <= last:
		return true // already applied, e.g. by a read
	case ep == e.epoch || (ep == "" && last == 0 && e.seq == 1):
		// A wall without an epoch takes the message's.
		err := w.Apply(e.message())
		if err == nil {
			b.applied.Add(1)
			return true
		}
		return errors.Is(err, wall.ErrDuplicate)
	}
	return false
}

// request serves a resync request: answered at once when the wall already
// holds the target, else by the wall's next read.
func (ap *applier) request(ctx context.Context, r resyncReq) {
	if w := ap.b.hub.Lookup(r.wallName); r.target == 0 || w == nil || w.Last() < r.target || w.Epoch() == "" {
		ap.want(ctx, r.wallName, &r)
		return
	}
	r.done <- nil
}

// readDirty has the walls marked dirty read.
func (ap *applier) readDirty(ctx context.Context) {
	b := ap.b
	b.dirty.Lock()
	walls := b.dirty.walls
	b.dirty.walls = make(map[string]struct{})
	b.dirty.Unlock()
	for n := range walls {
		ap.want(ctx, n, nil)
	}
}

// markDirtyQuiet marks a wall without kicking the applier, so a failing
// Redis is retried once per tick rather than in a loop.
func (b *Broker) markDirtyQuiet(wallName string) {
	b.dirty.Lock()
	b.dirty.walls[wallName] = struct{}{}
	b.dirty.Unlock()
}
