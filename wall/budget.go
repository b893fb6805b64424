package wall

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
)

// The cache memory budget. Every wall's cache charges the bytes its
// messages hold to its hub; a change that takes the hub over its budget
// trims, on the goroutine that made it, once no lock is held:
//
//  1. idle walls — no user through Acquire, no subscriber: a wall that
//     only has a cache — are evicted, least recently used first;
//  2. if that is not enough (the walls in use hold more than the budget),
//     the oldest messages of the biggest caches are dropped, down to one
//     level for all, each cache keeping at least its newest message.
//
// Either way down to 15/16 of the budget, so that the next trim is 1/16 of
// the budget of new messages away and trimming costs a scan of the walls
// per that many bytes, not per message. If the walls in use still hold
// more, the next trim waits until 1/16 of the budget more has come.
//
// Neither breaks a cursor: a cache that lost its oldest messages answers
// an older cursor with the whole cache and "missed", as when the ring
// drops them; an evicted wall is created anew on its next use, and its
// first reader syncs it from the broker (Redis: numbering continues), or,
// with the in-process broker, which has no copy, the new wall numbers in
// a new epoch (epochFor) so an old cursor gets "reset", never a silent gap.

// Accounting constants, measured on amd64 (see README, How it works).
const (
	// messageOverhead is what a message holds besides its body, html and
	// encoded bytes: the Message (152 bytes, a 160-byte allocation), its
	// id (36 bytes, 48 allocated), its ring slot, and the header of the
	// Redis payload a received message's strings share.
	messageOverhead = 256
	// wallOverhead is what a wall holds with an empty cache: the Wall,
	// its wake-up channel, its name and its entry in the hub's map.
	wallOverhead = 512
)

// MessageBytes returns the memory m holds in a cache: its body, html, the
// encoded JSON with its WebSocket frame header (one allocation), each
// rounded up as the allocator does, its author and a fixed overhead.
func MessageBytes(m *Message) int64 {
	return int64(allocBytes(len(m.Body)) + allocBytes(len(m.HTML)) + allocBytes(len(m.JSON)+maxFrameHeader) +
		len(m.User) + messageOverhead)
}

// allocBytes approximates the memory the Go allocator gives a request of
// n bytes: small requests round up to one of eight size classes per
// doubling (waste under 12.5%), large ones (over 32 KiB) to 8 KiB pages.
func allocBytes(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= 16:
		return 16
	case n > 32<<10:
		return (n + 8191) &^ 8191
	}
	step := 1 << (bits.Len(uint(n-1)) - 4)
	return (n + step - 1) &^ (step - 1)
}

// CacheStats is a hub's memory account.
type CacheStats struct {
	Bytes   int64 // accounted: cached messages and walls
	Budget  int64 // 0: none
	Walls   int   // walls held
	Evicted int64 // walls evicted to fit the budget, since start
	Trimmed int64 // messages dropped from caches in use to fit the budget, since start
}

// SetCacheBudget bounds the bytes the hub's caches hold (MessageBytes of
// every cached message, and a fixed overhead per wall); 0 or less is no
// bound. Set it before the hub is used.
func (h *Hub) SetCacheBudget(bytes int64) {
	if bytes <= 0 {
		h.budget.Store(0)
		h.trimAt.Store(math.MaxInt64)
		return
	}
	h.budget.Store(bytes)
	h.trimAt.Store(bytes)
	h.trimIfOver()
}

// CacheStats returns the hub's memory account.
func (h *Hub) CacheStats() CacheStats {
	return CacheStats{Bytes: h.bytes.Load(), Budget: h.budget.Load(), Walls: h.Len(),
		Evicted: h.evicted.Load(), Trimmed: h.trimmed.Load()}
}

// chargeLocked charges the change of the cache's bytes since before to
// the wall's hub, and returns the hub if the change took it over the
// point where it trims (the caller calls trimIfOver once the wall's lock
// is released). w.mu must be held.
func (w *Wall) chargeLocked(before int64) *Hub {
	h := w.hub
	if h == nil {
		return nil
	}
	d := w.buf.Bytes() - before
	if d == 0 {
		return nil
	}
	if h.bytes.Add(d) > h.trimAt.Load() && d > 0 {
		return h
	}
	return nil
}

// trimIfOver trims the hub if it is over its trim point; one goroutine
// trims at a time, and a change that finds one trimming leaves it the
// work. h may be nil. No lock may be held.
func (h *Hub) trimIfOver() {
	if h == nil {
		return
	}
	for h.bytes.Load() > h.trimAt.Load() && h.trimming.CompareAndSwap(false, true) {
		h.trim()
		h.trimming.Store(false)
	}
}

// trim brings the hub under its target (see above) and sets the next trim
// point.
func (h *Hub) trim() {
	budget := h.budget.Load()
	if budget <= 0 {
		return
	}
	target := budget - budget/16
	h.evictIdle(target)
	if h.bytes.Load() > target {
		h.trimBusy(target)
	}
	next := budget
	if b := h.bytes.Load(); b > target {
		next = max(budget, b+budget/16)
	}
	h.trimAt.Store(next)
}

// evictIdle evicts idle walls, least recently used first, until the hub
// holds at most target bytes.
func (h *Hub) evictIdle(target int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	idle := make([]*Wall, 0, len(h.walls))
	for _, w := range h.walls {
		if w.refs == 0 {
			idle = append(idle, w)
		}
	}
	slices.SortFunc(idle, func(a, b *Wall) int { return cmp.Compare(a.used, b.used) })
	for _, w := range idle {
		if h.bytes.Load() <= target {
			return
		}
		if h.evictLocked(w) {
			h.evicted.Add(1)
		}
	}
}

// trimBusy drops the oldest messages of the biggest caches, all down to
// one level, so that the hub holds at most target bytes.
func (h *Hub) trimBusy(target int64) {
	h.mu.Lock()
	walls := make([]*Wall, 0, len(h.walls))
	for _, w := range h.walls {
		walls = append(walls, w)
	}
	h.mu.Unlock()
	type sized struct {
		w *Wall
		n int64
	}
	caches := make([]sized, len(walls))
	for i, w := range walls {
		caches[i] = sized{w, w.cacheBytes()}
	}
	slices.SortFunc(caches, func(a, b sized) int { return cmp.Compare(b.n, a.n) })
	excess := h.bytes.Load() - target
	// The level: the highest at which the caches above it hold excess
	// bytes more than it.
	var level, above int64
	for k := range caches {
		above += caches[k].n
		next := int64(0)
		if k+1 < len(caches) {
			next = caches[k+1].n
		}
		if above-int64(k+1)*next >= excess {
			level = max(0, (above-excess)/int64(k+1))
			break
		}
	}
	for _, c := range caches {
		if c.n <= level {
			break
		}
		h.trimmed.Add(int64(c.w.dropOldest(level)))
	}
}

// cacheBytes returns the bytes the wall's cache holds.
func (w *Wall) cacheBytes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Bytes()
}

// dropOldest drops the cache's oldest messages until it holds at most
// limit bytes or one message, uncharges them, and returns how many it
// dropped. A detached wall is left alone.
func (w *Wall) dropOldest(limit int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hub == nil {
		return 0
	}
	n := w.buf.Len()
	w.hub.bytes.Add(-w.buf.DropOldest(limit))
	return n - w.buf.Len()
}

// evictLocked drops w from the hub if nothing uses it (no user through
// Acquire, no subscriber), and takes its bytes off the account. A wall
// evicted with messages lost its numbering here: its name's epoch
// generation moves on (epochFor). h.mu must be held.
func (h *Hub) evictLocked(w *Wall) bool {
	if w.refs > 0 {
		return false
	}
	w.mu.Lock()
	if len(w.subs) > 0 {
		w.mu.Unlock()
		return false
	}
	lost := w.last > 0
	if w.hub != nil {
		h.bytes.Add(-w.buf.Bytes() - wallOverhead)
		w.hub = nil
	}
	w.mu.Unlock()
	delete(h.walls, w.name)
	if lost {
		h.epochGen[h.epochBucket(w.name)]++
	}
	return true
}
