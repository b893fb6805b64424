package wall

import "sort"

// Interest is told when a wall gains its first local user and when it loses
// its last: a broker that subscribes per wall (Redis Cluster's sharded
// pub/sub) follows exactly the walls this instance serves. A user is
// anything holding the wall through Hub.Acquire: a long-poll, a WebSocket
// (a subscriber always holds one), a page or post being served, and a
// broker's own work on the wall.
//
// The calls for one wall name alternate, WallActive first, and are made in
// the order of the changes; the last call always matches the wall's state
// once the changes stop (a quick Acquire and Release may be told as nothing
// at all). Calls are serialized by a lock of the Hub's own, held during
// the call and used for nothing else: no lock an Interest could need (the
// hub's, a wall's) is held. So an Interest may call Hub and Wall methods,
// except Acquire, Release and SetInterest, which may wait for that lock.
// A wall's first Acquire waits for WallActive to return: an Interest must
// return quickly, and hand slow work (a network round trip) to a goroutine
// of its own.
type Interest interface {
	WallActive(name string)
	WallIdle(name string)
}

// SetInterest makes i the hub's Interest, replacing any previous one (nil
// for none). i is told WallActive at once for every wall that has users
// now, so it may be set after the hub is in use.
func (h *Hub) SetInterest(i Interest) {
	h.interestMu.Lock()
	defer h.interestMu.Unlock()
	h.interest = i
	h.told = make(map[string]struct{})
	if i == nil {
		return
	}
	h.mu.Lock()
	var active []string
	for n, w := range h.walls {
		if w.refs > 0 {
			active = append(active, n)
		}
	}
	h.mu.Unlock()
	sort.Strings(active)
	for _, n := range active {
		h.told[n] = struct{}{}
		i.WallActive(n)
	}
}

// settle tells the Interest about name if what it was last told differs
// from the wall's state now. Acquire and Release call it after a change,
// with no lock held. Reading the state under interestMu, rather than
// passing the change along, keeps the calls in order: whichever settle
// runs last sees the last change.
func (h *Hub) settle(name string) {
	h.interestMu.Lock()
	defer h.interestMu.Unlock()
	if h.interest == nil {
		return
	}
	h.mu.Lock()
	w := h.walls[name]
	active := w != nil && w.refs > 0
	h.mu.Unlock()
	if _, told := h.told[name]; told == active {
		return
	}
	if active {
		h.told[name] = struct{}{}
		h.interest.WallActive(name)
	} else {
		delete(h.told, name)
		h.interest.WallIdle(name)
	}
}

// Evict drops the named wall and its cache if nothing uses it (no user
// through Acquire, no subscriber), and reports whether the hub no longer
// holds it. A broker that stops following a wall's messages evicts it, so
// the cache, which would go stale, is never served: the next Acquire
// creates the wall anew, empty, and its first reader syncs it with the
// broker. It fails (false) while the wall is in use; it may be called from
// any goroutine but not from an Interest call.
func (h *Hub) Evict(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.walls[name]
	if w == nil {
		return true
	}
	if w.refs > 0 || w.Subscribers() > 0 {
		return false
	}
	delete(h.walls, name)
	return true
}
