package redisbroker

import (
	"context"

	"wall/wall"
)

// This file holds how the applier has the Redis history read without
// waiting for it: the Redis work of catching a wall up (fetchWall) and of
// the periodic check runs on history readers, short-lived goroutines the
// applier starts, at most readsPerNode at a time per Redis node; each hands
// its job back on the applier's done channel, and the applier applies the
// outcome. A node that stalls holds only its own readers, and with them
// only its own walls.
//
// Per wall the rules are:
//
//   - At most one read of a wall is queued or in flight (its flight).
//     Whatever asks for another meanwhile joins it: a resync request
//     waits for it if it has not started yet, else for the outcome of the
//     next read, which the applier starts after this one if the request
//     is not satisfied by then; a gap or a dirty mark asks for one more.
//   - From the moment its read starts until its outcome is applied, the
//     applier writes nothing to the wall: the wall's pub/sub messages are
//     held, in order (at most heldMax; past that they are dropped and the
//     wall read once more), and applied after the outcome, each dropped by
//     seq if the read brought it. So the reader works on a wall that does
//     not change under it, and every message is applied once, in order.
//   - Each node's reads start in the order they were asked for, so no
//     wall waits for more than the reads asked before it on its node, each
//     bounded by Config.Timeout.
//
// A read that fails marks its wall dirty, for a read at the next tick.

// Read tuning.
const (
	readsPerNode = 4             // reads and checks in flight per Redis node
	heldMax      = redisQueueLen // pub/sub messages a wall holds while read
)

// job is a piece of Redis work for a history reader: a wall's catch-up
// (w set) or the check of a node's held walls (names set). The reader
// fills in the outcome.
type job struct {
	node     string
	wallName string
	w        *wall.Wall // set when the read starts
	names    []string

	plan   plan      // a catch-up's outcome
	states []checked // a check's outcome, by names' index
	err    error
}

// flight is a wall's read, queued or in flight.
type flight struct {
	w       *wall.Wall    // the wall read, from when the read starts
	reading bool          // started: the wall is not written until it lands
	waiters []chan error  // requests answered by this read's outcome
	later   []resyncReq   // requests that came while it was reading
	again   bool          // read once more after this one
	held    []*redisEvent // the wall's pub/sub messages since the read started
}

// hold keeps a pub/sub message of the wall for after its read.
func (f *flight) hold(e *redisEvent) {
	if len(f.held) >= heldMax {
		f.again = true // the next read brings it
		return
	}
	f.held = append(f.held, e)
}

// lane is one Redis node's jobs.
type lane struct {
	running  int
	queue    []*job // waiting to start, oldest first
	checking bool   // a check of the node is queued or running
}

// want has wall read: a new read, or the one already asked for. r, if
// not nil, is answered with the outcome.
func (ap *applier) want(ctx context.Context, name string, r *resyncReq) {
	if ap.b.hub.Lookup(name) == nil {
		if r != nil {
			r.done <- nil // nothing held here to bring up to date
		}
		return
	}
	f := ap.flights[name]
	switch {
	case f == nil:
		f = &flight{}
		ap.flights[name] = f
		if r != nil {
			f.waiters = append(f.waiters, r.done)
		}
		ap.submit(ctx, &job{node: ap.b.nodeOf(ctx, name), wallName: name})
	case !f.reading:
		if r != nil {
			f.waiters = append(f.waiters, r.done) // the read has not begun: it covers r
		}
	case r != nil:
		f.later = append(f.later, *r)
	default:
		f.again = true
	}
}

// submit queues j on its node's lane and starts what the lane allows.
func (ap *applier) submit(ctx context.Context, j *job) {
	l := ap.lanes[j.node]
	if l == nil {
		l = &lane{}
		ap.lanes[j.node] = l
	}
	l.queue = append(l.queue, j)
	ap.pump(ctx, j.node)
}

// pump starts the node's queued jobs, oldest first, while fewer than
// readsPerNode run; it forgets a lane with nothing left.
func (ap *applier) pump(ctx context.Context, node string) {
	l := ap.lanes[node]
	for l.running < readsPerNode && len(l.queue) > 0 {
		j := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		if j.names == nil {
			f := ap.flights[j.wallName]
			if j.w = ap.b.hub.Lookup(j.wallName); j.w == nil {
				// Dropped while queued: nothing left to bring up to date.
				delete(ap.flights, j.wallName)
				for _, d := range f.waiters {
					d <- nil
				}
				continue
			}
			f.w, f.reading = j.w, true
		}
		l.running++
		ap.start(ctx, j)
	}
	if l.running == 0 && len(l.queue) == 0 {
		delete(ap.lanes, node)
	}
}

// start runs j on a history reader, which hands it back on done (or ends
// with ctx).
func (ap *applier) start(ctx context.Context, j *job) {
	b := ap.b
	ap.readers.Go(ap.sv.guard(ctx, "history reader", func(ctx context.Context) {
		if j.names != nil {
			j.states, j.err = b.checkNode(ctx, j.names)
		} else {
			j.plan, j.err = b.fetchWall(ctx, j.w)
		}
		select {
		case ap.done <- j:
		case <-ctx.Done():
		}
	}))
}

// finish takes a job's outcome back from its reader.
func (ap *applier) finish(ctx context.Context, j *job) {
	l := ap.lanes[j.node]
	l.running--
	if j.names != nil {
		l.checking = false
		ap.checked(ctx, j)
	} else {
		ap.landed(ctx, j)
	}
	if ap.lanes[j.node] == l {
		ap.pump(ctx, j.node)
	}
}

// landed applies a wall's read, then what waited for it: the requests,
// the held messages, and another read if one was asked for.
func (ap *applier) landed(ctx context.Context, j *job) {
	b := ap.b
	f := ap.flights[j.wallName]
	delete(ap.flights, j.wallName)
	err := j.err
	if b.hub.Lookup(j.wallName) != f.w || (err == nil && !b.applyPlan(f.w, j.plan)) {
		// Evicted while read (and maybe followed anew), or changed: the
		// outcome is for a wall that is gone. The requests wait for the
		// next read (none if the wall is gone: they are answered then).
		for _, d := range f.waiters {
			f.later = append(f.later, resyncReq{wallName: j.wallName, done: d})
		}
		f.waiters, f.again = nil, true
	}
	if err != nil && ctx.Err() == nil {
		b.log.Debug("redis resync failed", "wall", wall.LogName(j.wallName), "err", err)
		b.markDirtyQuiet(j.wallName) // read again at the next tick
	}
	for _, d := range f.waiters {
		d <- err
	}
	for _, e := range f.held {
		ap.applyEvent(ctx, e)
	}
	for _, r := range f.later {
		ap.request(ctx, r)
	}
	if f.again {
		ap.want(ctx, j.wallName, nil)
	}
}

// nodeOf returns the node whose lane a wall's reads take: the address of
// the master of its slot on a cluster (as go-redis knows the topology,
// without asking Redis once it has loaded it), "" on a single Redis or
// when no master is known.
func (b *Broker) nodeOf(ctx context.Context, name string) string {
	if b.cluster == nil {
		return ""
	}
	node, err := b.cluster.MasterForKey(ctx, b.key(name))
	if err != nil {
		return ""
	}
	return node.Options().Addr
}
