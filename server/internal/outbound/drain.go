package outbound

import (
	"math/rand/v2"
	"time"
)

// A drain is how an instance leaves without a reconnect storm: rather than
// every client at once (Shutdown), its members are told to shut down one
// by one, in random order, spread evenly over a span, so their clients
// reconnect to the other instances at an even rate. Members that answer
// and close at once anyway (a waiting long-poll, whose client polls again
// as usual) need no pacing and are told when the drain begins.

// drainStep is how often Run's loop tells the next members during a drain.
const drainStep = 10 * time.Millisecond

// drainState is a Registry's drain, under its mu.
type drainState[M comparable] struct {
	began bool
	order []M // members to tell, shuffled
	next  int // order[:next] were told
	start time.Time
	span  time.Duration
	done  chan struct{} // closed when every member of order was told, or Run ended
	ended bool          // done is closed
}

// Drain begins a paced drain and returns at once: new members are refused
// (Enter is false, Add shuts a late one down), members paced reports false
// for are shut down now, and the others are shut down by Run's loop, one
// by one in random order, spread evenly over span (at once if span <= 0).
// The channel is closed when the last of them has been told, or Run has
// ended. A second call returns the first one's channel.
func (r *Registry[M]) Drain(span time.Duration, paced func(M) bool) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.drain
	if d.began {
		return d.done
	}
	d.began, d.start, d.span, d.done = true, time.Now(), span, make(chan struct{})
	r.closing = true
	for m, slot := range r.set {
		switch {
		case slot == told:
		case paced(m):
			d.order = append(d.order, m)
		default:
			r.set[m] = told
			m.Shutdown()
		}
	}
	rand.Shuffle(len(d.order), func(i, j int) { d.order[i], d.order[j] = d.order[j], d.order[i] })
	select {
	case r.wakeChan() <- struct{}{}:
	default:
	}
	return d.done
}

// Draining reports whether a drain has begun.
func (r *Registry[M]) Draining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drain.began
}

// wakeChan returns the channel on which Drain wakes Run. r.mu must be
// held.
func (r *Registry[M]) wakeChan() chan struct{} {
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	return r.wake
}

// pace tells the members whose turn has come by now: the first
// len(order)×elapsed/span of them. It reports whether all were told.
func (r *Registry[M]) pace(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.drain
	target := len(d.order)
	if elapsed := now.Sub(d.start); d.span > 0 && elapsed < d.span {
		target = int((int64(len(d.order))*int64(elapsed) + int64(d.span) - 1) / int64(d.span))
	}
	for ; d.next < target; d.next++ {
		m := d.order[d.next]
		var zero M
		d.order[d.next] = zero
		if slot, ok := r.set[m]; ok && slot != told { // not gone, nor told by Shutdown
			r.set[m] = told
			m.Shutdown()
		}
	}
	if d.next < len(d.order) {
		return false
	}
	r.endDrainLocked()
	return true
}

// endDrain closes a drain's channel when Run ends.
func (r *Registry[M]) endDrain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endDrainLocked()
}

func (r *Registry[M]) endDrainLocked() {
	if d := &r.drain; d.began && !d.ended {
		d.ended = true
		close(d.done)
	}
}
