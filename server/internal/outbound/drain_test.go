package outbound

import (
	"sync"
	"testing"
	"time"
)

// timedMember records when it was told to shut down.
type timedMember struct {
	transport string
	mu        sync.Mutex
	at        []time.Time
}

func (m *timedMember) Transport() string { return m.transport }
func (m *timedMember) Keepalive()        {}
func (m *timedMember) Shutdown() {
	m.mu.Lock()
	m.at = append(m.at, time.Now())
	m.mu.Unlock()
}

// A drain tells the members that need no pacing at once, and the others
// spread evenly over the span, each once; one that left before its turn
// is not told; new members are refused; the channel closes when all were
// told; a Shutdown afterwards tells nobody twice.
func TestRegistryDrainPaces(t *testing.T) {
	const n, span = 400, 400 * time.Millisecond
	var r Registry[*timedMember]
	streams := make([]*timedMember, n)
	polls := make([]*timedMember, 20)
	for i := range streams {
		streams[i] = &timedMember{transport: "ws"}
		r.Enter()
		r.Add(streams[i])
	}
	for i := range polls {
		polls[i] = &timedMember{transport: "longpoll"}
		r.Enter()
		r.Add(polls[i])
	}
	gone := streams[n-1]
	r.Leave(gone)

	done := make(chan struct{})
	ran := make(chan struct{})
	go func() { r.Run(done, time.Hour); close(ran) }()
	start := time.Now()
	drained := r.Drain(span, func(m *timedMember) bool { return m.transport == "ws" })
	for _, m := range polls {
		if len(m.at) != 1 || m.at[0].Sub(start) > 5*time.Millisecond {
			t.Fatalf("a member that needs no pacing was told %v after the drain began", m.at)
		}
	}
	if r.Enter() || !r.Draining() {
		t.Fatal("Enter accepted during a drain")
	}
	select {
	case <-drained:
	case <-time.After(span + 2*time.Second):
		t.Fatal("the drain did not end")
	}
	took := time.Since(start)
	if took < span-drainStep || took > span+500*time.Millisecond {
		t.Fatalf("drain took %v, want about %v", took, span)
	}
	close(done)
	<-ran
	r.Shutdown()

	quarters := make([]int, 4)
	for _, m := range streams[:n-1] {
		if len(m.at) != 1 {
			t.Fatalf("member told %d times", len(m.at))
		}
		q := int(m.at[0].Sub(start) * 4 / span)
		quarters[min(q, 3)]++
	}
	if len(gone.at) != 0 {
		t.Fatal("a member that had left was told")
	}
	for _, k := range quarters {
		// An even spread puts (n-1)/4 ≈ 100 in each quarter.
		if k < 60 || k > 140 {
			t.Fatalf("closes per quarter of the span: %v, want about %d each", quarters, (n-1)/4)
		}
	}
	t.Logf("closes per quarter of %v: %v", span, quarters)
	for _, m := range polls {
		r.Leave(m)
	}
	for _, m := range streams[:n-1] {
		r.Leave(m)
	}
	r.Wait()
}

// With no span, a drain tells every member at once.
func TestRegistryDrainNoSpan(t *testing.T) {
	var r Registry[*timedMember]
	ms := []*timedMember{{transport: "ws"}, {transport: "ws"}}
	for _, m := range ms {
		r.Enter()
		r.Add(m)
	}
	done := make(chan struct{})
	ran := make(chan struct{})
	go func() { r.Run(done, time.Hour); close(ran) }()
	select {
	case <-r.Drain(0, func(*timedMember) bool { return true }):
	case <-time.After(2 * time.Second):
		t.Fatal("a drain without span did not end")
	}
	close(done)
	<-ran
	for _, m := range ms {
		if len(m.at) != 1 {
			t.Fatalf("told %d times", len(m.at))
		}
	}
}
