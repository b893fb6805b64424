package outbound

import (
	"sync"
	"time"
)

// Member is a connection a Registry holds. The Registry calls its methods
// with its lock held: they must not block nor call back into the
// Registry.
type Member interface {
	// Transport names the member's transport, for counts. It never
	// changes.
	Transport() string
	// Keepalive is called once per keepalive period (a ping is due); a
	// member with nothing to send (a parked long-poll) does nothing.
	Keepalive()
	// Shutdown tells the member the server is shutting down; it must end
	// within a bounded time (Server.Wait waits for it).
	Shutdown()
}

// Slots is how many parts the keepalive period is cut into: every tick of
// the keepalive loop (period/Slots apart) pings the members of one slot,
// so ten thousand connections are not all pinged, and do not all answer,
// in the same burst.
const Slots = 16

// Registry holds every connection a server keeps outside net/http
// (http.Server.Shutdown does not track hijacked connections): it counts
// them per transport, pings them (Run), tells them to close, all at once
// (Shutdown) or spread over a span (Drain, drain.go), and lets the server
// wait for the last one (Wait). The zero value is ready.
//
// M is one member type, or Member itself for a Registry that holds
// several transports (the server's: WebSocket sessions and the
// long-poll engine's connections); members are then compared as
// interface values, so their dynamic types must be comparable (pointers).
type Registry[M interface {
	comparable
	Member
}] struct {
	mu      sync.Mutex
	set     map[M]uint8 // member → its keepalive slot, or told once it was told to shut down
	byTrans map[string]*transportCount
	closing bool
	tick    uint8 // slot the next Tick pings
	live    sync.WaitGroup
	wake    chan struct{} // 1-buffered: Drain began (wakeChan)
	drain   drainState[M]
}

// told marks, in place of its keepalive slot, a member that was told to
// shut down: it is neither pinged nor told again.
const told = 255

// transportCount is a Registry's count of one transport's members.
type transportCount struct {
	n    int
	next uint8 // keepalive slot of the transport's next member
}

// Enter counts a connection about to join, before its handshake is
// answered, so Wait cannot miss one that the HTTP server let through. It
// is false once shutting down. Every Enter that returned true is ended by
// one Leave.
func (r *Registry[M]) Enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.live.Add(1)
	return true
}

// Add registers an entered member. One that arrives as the server shuts
// down is told to shut down at once. Each transport's members are given
// keepalive slots in turn, so any burst of connections is spread over the
// whole period, whatever other transports join in between.
func (r *Registry[M]) Add(m M) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		m.Shutdown()
		return
	}
	if r.set == nil {
		r.set = make(map[M]uint8)
		r.byTrans = make(map[string]*transportCount)
	}
	tc := r.byTrans[m.Transport()]
	if tc == nil {
		tc = new(transportCount)
		r.byTrans[m.Transport()] = tc
	}
	r.set[m] = tc.next
	tc.next = (tc.next + 1) % Slots
	tc.n++
}

// Leave ends what Enter began; m is the zero M if it was never added.
func (r *Registry[M]) Leave(m M) {
	r.mu.Lock()
	if _, ok := r.set[m]; ok {
		delete(r.set, m)
		r.byTrans[m.Transport()].n--
	}
	r.mu.Unlock()
	r.live.Done()
}

// Len returns the number of members.
func (r *Registry[M]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.set)
}

// Count returns the number of members of transport.
func (r *Registry[M]) Count(transport string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tc := r.byTrans[transport]; tc != nil {
		return tc.n
	}
	return 0
}

// Each calls f on every member, with the Registry's lock held: f must not
// block nor call back into the Registry. It is for counts that only the
// members know (the long-poll engine's polls waiting).
func (r *Registry[M]) Each(f func(M)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for m := range r.set {
		f(m)
	}
}

// Tick calls Keepalive on the members of the next slot: over Slots ticks,
// every member once. Run calls it; tests may call it instead of Run.
func (r *Registry[M]) Tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.tick
	r.tick = (r.tick + 1) % Slots
	for m, slot := range r.set { // a member told to shut down is never in slot k
		if slot == k {
			m.Keepalive()
		}
	}
}

// Run is the keepalive loop: it ticks Slots times per period, so that
// each member's Keepalive comes once per period, and paces a drain once
// Drain has begun one (drain.go), until done is closed. It is the one
// goroutine its caller starts for the Registry; after it returns, the
// caller calls Shutdown.
func (r *Registry[M]) Run(done <-chan struct{}, period time.Duration) {
	t := time.NewTicker(max(period/Slots, time.Millisecond))
	defer t.Stop()
	r.mu.Lock()
	wake := r.wakeChan()
	r.mu.Unlock()
	var pacer *time.Ticker
	var pace <-chan time.Time // pacer's ticks while a drain is paced
	defer func() {
		if pacer != nil {
			pacer.Stop()
		}
		r.endDrain()
	}()
	for {
		select {
		case <-t.C:
			r.Tick()
		case <-wake:
			pacer = time.NewTicker(drainStep)
			pace = pacer.C
			if r.pace(time.Now()) {
				pacer.Stop()
				pace = nil
			}
		case now := <-pace:
			if r.pace(now) {
				pacer.Stop()
				pace = nil
			}
		case <-done:
			return
		}
	}
}

// Shutdown refuses new members and shuts down every member not yet told
// to (all at once: a drain spreads them out). Call it once Run has
// returned.
func (r *Registry[M]) Shutdown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closing = true
	for m, slot := range r.set {
		if slot != told {
			r.set[m] = told
			m.Shutdown()
		}
	}
}

// Wait blocks until every entered connection has left. Call it after
// Shutdown.
func (r *Registry[M]) Wait() { r.live.Wait() }
