package wall

import (
	"context"
	"errors"
	"sync"
)

// Subscriber receives a wall's live messages (a WebSocket connection).
type Subscriber interface {
	// Send queues m for delivery. It is called with the wall's lock held, in
	// seq order, and must never block: a subscriber that cannot keep up
	// drops itself (it resumes later from its cursor).
	Send(m *Message)
	// Reset tells the subscriber that the wall's history was replaced (a
	// new epoch, or a gap wider than the history): positions it held mean
	// nothing any more, and msgs (oldest first) is the new cache. Called
	// under the wall's lock like Send; must not block.
	Reset(msgs []*Message)
}

// Errors returned by Wall.Apply.
var (
	ErrDuplicate = errors.New("message already applied")
	ErrGap       = errors.New("message seq leaves a gap")
	ErrEpoch     = errors.New("message belongs to another epoch")
)

// Wall is one named room: a bounded cache, the seq and epoch of its newest
// message, the live subscribers and a wake-up channel for long-pollers.
//
// The epoch names the wall's numbering: it changes when the history is lost
// (the in-process broker's process restarted; Redis lost the wall and no
// instance could restore it), so a cursor of an older numbering is answered
// with the whole cache and Reset rather than read as a position in the new
// one. It is empty until a broker sets it (a Redis wall not loaded yet).
type Wall struct {
	name string

	mu      sync.Mutex
	buf     Buffer
	last    uint64                  // seq of the newest applied message
	epoch   string                  // numbering of last; see Wall
	changed chan struct{}           // closed and replaced on every change
	subs    map[Subscriber]struct{} // live subscribers
	clients []transportCount        // subscribers per transport (Clients)
	// hub is charged the cache's bytes (Hub.SetCacheBudget); nil for a
	// wall outside a hub, or evicted from it (detached: its bytes were
	// taken off the hub's account, and what it still does is not charged).
	hub *Hub

	refs int    // active users (pollers, subscribers, pages); guarded by Hub.mu
	used uint64 // the hub's clock at the wall's last Acquire or Release; guarded by Hub.mu
}

func newWall(name string, cacheSize int, epoch string) *Wall {
	return &Wall{name: name, buf: NewBuffer(cacheSize), epoch: epoch, changed: make(chan struct{})}
}

// Name returns the wall's name.
func (w *Wall) Name() string { return w.name }

// Last returns the seq of the newest message applied to the wall.
func (w *Wall) Last() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Epoch returns the wall's epoch: the numbering its seqs belong to.
func (w *Wall) Epoch() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch
}

// Messages returns the cached messages, oldest first.
func (w *Wall) Messages() []*Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Slice(0)
}

// Snapshot returns the cached messages, oldest first, and the cursor just
// after the newest one, read together: a page that shows msgs and resumes
// from the cursor misses nothing and shows nothing twice. On an empty wall
// the cursor is the wall's position (seq 0 of its epoch, or the last seq if
// everything was dropped by Replace).
func (w *Wall) Snapshot() ([]*Message, Cursor) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Slice(0), Cursor{Set: true, Seq: w.last, Epoch: w.epoch}
}

// Position returns the cursor just after the wall's newest message (its
// last seq and epoch, read together).
func (w *Wall) Position() Cursor {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Cursor{Set: true, Seq: w.last, Epoch: w.epoch}
}

// Poll returns the messages after c if there are any. Otherwise it returns
// an empty Result and a channel that is closed at the next change; the
// caller waits on it and polls again. Registering nothing means a poller
// that goes away leaves nothing behind.
func (w *Wall) Poll(c Cursor) (Result, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.buf.Since(c, w.last, w.epoch)
	if len(r.Messages) > 0 {
		return r, nil
	}
	return Result{}, w.changed
}

// Subscribe adds s as a live subscriber and returns the catch-up after c,
// computed under the same lock, so the subscriber sees every message after
// its cursor exactly once. Without a cursor the catch-up is empty.
func (w *Wall) Subscribe(s Subscriber, c Cursor) Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs == nil {
		w.subs = make(map[Subscriber]struct{})
	}
	if _, ok := w.subs[s]; !ok {
		w.subs[s] = struct{}{}
		w.countClient(s, 1)
	}
	if !c.Set {
		return Result{}
	}
	return w.buf.Since(c, w.last, w.epoch)
}

// Unsubscribe removes s. It is safe to call more than once.
func (w *Wall) Unsubscribe(s Subscriber) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.subs[s]; ok {
		delete(w.subs, s)
		w.countClient(s, -1)
	}
}

// Subscribers returns the number of live subscribers.
func (w *Wall) Subscribers() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.subs)
}

// Apply adds m, which must carry the next seq, to the cache and hands it to
// every subscriber and waiting poller. This is the one delivery path: every
// broker ends here, for local and remote posts alike. A wall without an
// epoch takes m's; a message of another epoch is refused (ErrEpoch): the
// broker replaces the history instead.
func (w *Wall) Apply(m *Message) error {
	h, err := w.apply(m)
	h.trimIfOver() // with no lock held: it may evict walls
	return err
}

// apply is Apply but for the budget: it returns the hub to trim, if the
// message took it over its budget.
func (w *Wall) apply(m *Message) (*Hub, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.epoch != "" && m.Epoch != w.epoch:
		return nil, ErrEpoch
	case m.Seq <= w.last:
		return nil, ErrDuplicate
	case m.Seq != w.last+1:
		return nil, ErrGap
	}
	before := w.buf.Bytes()
	w.epoch = m.Epoch
	w.applyLocked(m)
	return w.chargeLocked(before), nil
}

// sequence assigns the next seq under the lock and applies the message that
// build returns for it, in the wall's epoch, unless a message with id is
// still cached: then that one is returned, and stored is false. Used by the
// in-process broker, which is its own sequencer.
func (w *Wall) sequence(id string, build func(seq uint64, epoch string) *Message) (m *Message, stored bool) {
	m, stored, h := w.sequenceLocked(id, build)
	h.trimIfOver()
	return m, stored
}

// sequenceLocked is sequence under the wall's lock; it returns the hub
// to trim, if the new message took it over its budget.
func (w *Wall) sequenceLocked(id string, build func(seq uint64, epoch string) *Message) (m *Message, stored bool, h *Hub) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if id != "" {
		if i := w.buf.indexOfID(id); i >= 0 {
			return w.buf.At(i), false, nil
		}
	}
	before := w.buf.Bytes()
	m = build(w.last+1, w.epoch)
	w.applyLocked(m)
	return m, true, w.chargeLocked(before)
}

// applyLocked appends m and notifies. w.mu must be held. Notifying is cheap
// and non-blocking: subscribers only queue, pollers wake by channel close.
func (w *Wall) applyLocked(m *Message) {
	w.buf.Push(m)
	w.last = m.Seq
	for s := range w.subs {
		s.Send(m)
	}
	w.notifyLocked()
}

func (w *Wall) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// WaitApplied blocks until the wall has applied seq, and returns that
// message if it is still cached. It gives read-your-writes: a post answers
// only once its own instance has the message.
func (w *Wall) WaitApplied(ctx context.Context, seq uint64) (*Message, error) {
	for {
		w.mu.Lock()
		last, ch := w.last, w.changed
		var m *Message
		if last >= seq && w.buf.Len() > 0 {
			if first := w.buf.At(0).Seq; seq >= first {
				m = w.buf.At(int(seq - first))
			}
		}
		w.mu.Unlock()
		if last >= seq {
			return m, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// idle reports whether the wall holds nothing worth keeping. Hub.mu must be
// held (it guards refs).
func (w *Wall) idle() bool {
	if w.refs > 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Len() == 0 && len(w.subs) == 0 && w.last == 0
}

// Has reports whether this instance can place cursor c: no cursor, a seq it
// has applied (of its epoch, if c names one), or an id in its cache. A
// cursor it cannot place may have been minted by a peer that is a little
// ahead, or in a newer epoch this instance has not loaded; see Broker.Sync.
func (w *Wall) Has(c Cursor) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !c.Set:
		return true
	case c.ID != "":
		return w.buf.indexOfID(c.ID) >= 0
	case c.Epoch != "" && c.Epoch != w.epoch:
		return false
	}
	return c.Seq <= w.last
}
