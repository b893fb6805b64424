package outbound

import (
	"sync"
	"testing"
	"time"
)

// fakeMember records the registry's calls.
type fakeMember struct {
	transport string
	mu        sync.Mutex
	pings     []int // the tick of each Keepalive
	shutdowns int
	tick      *int // the test's tick counter
}

func (m *fakeMember) Transport() string { return m.transport }
func (m *fakeMember) Keepalive() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pings = append(m.pings, *m.tick)
}
func (m *fakeMember) Shutdown() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.shutdowns++
}

// Every member is pinged once per period (Slots ticks), at a steady
// interval, and each tick pings about 1/Slots of them, not all at once,
// even when they all joined in one burst.
func TestRegistryKeepaliveSpread(t *testing.T) {
	const n = 1000
	var r Registry[*fakeMember]
	tick := 0
	ms := make([]*fakeMember, n)
	for i := range ms {
		ms[i] = &fakeMember{transport: "ws", tick: &tick}
		if !r.Enter() {
			t.Fatal("Enter refused")
		}
		r.Add(ms[i])
	}
	perTick := make([]int, 3*Slots)
	for tick = 0; tick < 3*Slots; tick++ {
		r.Tick()
	}
	for _, m := range ms {
		if len(m.pings) != 3 {
			t.Fatalf("member pinged %d times in 3 periods, want 3", len(m.pings))
		}
		for i, at := range m.pings {
			perTick[at]++
			if i > 0 && at-m.pings[i-1] != Slots {
				t.Fatalf("pings at ticks %v: not one period apart", m.pings)
			}
		}
	}
	for at, k := range perTick {
		if k > n/Slots+1 {
			t.Fatalf("tick %d pinged %d of %d members: a burst (at most %d)", at, k, n, n/Slots+1)
		}
	}
}

// Counts follow Add and Leave per transport; Leave of a member never
// added (a failed handshake) only ends its Enter.
func TestRegistryCounts(t *testing.T) {
	var r Registry[*fakeMember]
	tick := 0
	a, b, c := &fakeMember{transport: "ws", tick: &tick}, &fakeMember{transport: "ws", tick: &tick}, &fakeMember{transport: "sse", tick: &tick}
	for _, m := range []*fakeMember{a, b, c} {
		r.Enter()
		r.Add(m)
	}
	r.Enter() // a handshake that will fail
	if r.Len() != 3 || r.Count("ws") != 2 || r.Count("sse") != 1 {
		t.Fatalf("Len %d, ws %d, sse %d", r.Len(), r.Count("ws"), r.Count("sse"))
	}
	r.Leave(a)
	r.Leave(nil)
	if r.Len() != 2 || r.Count("ws") != 1 {
		t.Fatalf("after leaving: Len %d, ws %d", r.Len(), r.Count("ws"))
	}
	r.Leave(b)
	r.Leave(c)
	waited := make(chan struct{})
	go func() { r.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after every Enter was left")
	}
}

// At shutdown (after Run) Shutdown tells every member once, refuses new connections, and
// shuts down one that was entered before but added after; Wait returns
// once they have all left.
func TestRegistryShutdown(t *testing.T) {
	var r Registry[*fakeMember]
	tick := 0
	ms := []*fakeMember{{transport: "ws", tick: &tick}, {transport: "sse", tick: &tick}}
	for _, m := range ms {
		r.Enter()
		r.Add(m)
	}
	late := &fakeMember{transport: "ws", tick: &tick}
	r.Enter()
	done := make(chan struct{})
	close(done)
	r.Run(done, time.Hour) // returns at once: done is closed
	r.Shutdown()
	for _, m := range ms {
		if m.shutdowns != 1 {
			t.Fatalf("member shut down %d times", m.shutdowns)
		}
	}
	if r.Enter() {
		t.Fatal("Enter accepted after shutdown")
	}
	r.Add(late)
	if late.shutdowns != 1 || r.Len() != 2 {
		t.Fatalf("late member: %d shutdowns, Len %d", late.shutdowns, r.Len())
	}
	waited := make(chan struct{})
	go func() { r.Wait(); close(waited) }()
	for _, m := range append(ms, late) {
		select {
		case <-waited:
			t.Fatal("Wait returned with members left")
		default:
		}
		r.Leave(m)
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return")
	}
}

// quietMember is a member of another type with nothing to send, as a
// parked long-poll is: its Keepalive does nothing.
type quietMember struct{ shutdowns int }

func (*quietMember) Transport() string { return "longpoll" }
func (*quietMember) Keepalive()        {}
func (m *quietMember) Shutdown()       { m.shutdowns++ }

// A Registry of Member holds members of several types, as the server's
// does: counts per transport, Each sees them all, one shutdown reaches
// them all, and each transport's members are spread over the keepalive
// slots even when they join interleaved with another transport's.
func TestRegistryMixedMembers(t *testing.T) {
	const n = 320 // per transport
	var r Registry[Member]
	tick := 0
	ws := make([]*fakeMember, n)
	polls := make([]*quietMember, n)
	for i := range n {
		ws[i] = &fakeMember{transport: "ws", tick: &tick}
		polls[i] = &quietMember{}
		for _, m := range []Member{ws[i], polls[i]} {
			if !r.Enter() {
				t.Fatal("Enter refused")
			}
			r.Add(m)
		}
	}
	r.Enter() // a poll that never got its connection
	r.Leave(nil)
	if r.Len() != 2*n || r.Count("ws") != n || r.Count("longpoll") != n || r.Count("sse") != 0 {
		t.Fatalf("Len %d, ws %d, longpoll %d, sse %d", r.Len(), r.Count("ws"), r.Count("longpoll"), r.Count("sse"))
	}
	quiet := 0
	r.Each(func(m Member) {
		if _, ok := m.(*quietMember); ok {
			quiet++
		}
	})
	if quiet != n {
		t.Fatalf("Each saw %d of %d quiet members", quiet, n)
	}

	perTick := make([]int, Slots)
	for tick = 0; tick < Slots; tick++ {
		r.Tick()
	}
	for _, m := range ws {
		if len(m.pings) != 1 {
			t.Fatalf("ws member pinged %d times in a period, want 1", len(m.pings))
		}
		perTick[m.pings[0]]++
	}
	for at, k := range perTick {
		if k != n/Slots {
			t.Fatalf("tick %d pinged %d ws members, want %d: %v", at, k, n/Slots, perTick)
		}
	}

	done := make(chan struct{})
	close(done)
	r.Run(done, time.Hour)
	r.Shutdown()
	for i := range n {
		if ws[i].shutdowns != 1 || polls[i].shutdowns != 1 {
			t.Fatalf("member %d: shut down %d and %d times", i, ws[i].shutdowns, polls[i].shutdowns)
		}
		r.Leave(ws[i])
		r.Leave(polls[i])
	}
	if r.Len() != 0 || r.Count("ws") != 0 || r.Count("longpoll") != 0 {
		t.Fatalf("after leaving: Len %d, ws %d, longpoll %d", r.Len(), r.Count("ws"), r.Count("longpoll"))
	}
	r.Wait()
}

// Reasons have distinct names, used as metric labels.
func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := Live; r < numReasons; r++ {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Fatalf("reason %d named %q", r, s)
		}
		seen[s] = true
	}
	var c Counters
	c.Add(SlowReader)
	c.Add(SlowReader)
	n := 0
	c.Each(func(r Reason, k int64) {
		n++
		if (r == SlowReader) != (k == 2) || r == Live {
			t.Fatalf("Each: %v %d", r, k)
		}
	})
	if n != int(numReasons)-1 {
		t.Fatalf("Each visited %d reasons", n)
	}
}
