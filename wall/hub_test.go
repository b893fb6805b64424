package wall

import (
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"main", true},
		{"a", true},
		{"A-Z_a.z~0", true},
		{"-_.~", true},
		{".", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"a/b", false},
		{"a b", false},
		{" a", false},
		{"a%20b", false},
		{"a?b", false},
		{"a#b", false},
		{"a+b", false},
		{"a\x00", false},
		{"é", false},
		{"日本", false},
		{"a\x7f", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHubAcquireRelease(t *testing.T) {
	h := NewHub(7)
	if h.CacheSize() != 7 {
		t.Fatalf("CacheSize = %d", h.CacheSize())
	}

	// An idle, empty wall goes away with its last user.
	w := h.Acquire("a")
	if h.Lookup("a") != w || w.Name() != "a" {
		t.Fatal("Acquire did not register the wall")
	}
	h.Release(w)
	if h.Lookup("a") != nil || len(h.Names()) != 0 {
		t.Fatalf("empty wall kept after its last Release: %v", h.Names())
	}

	// It stays while another user holds it.
	w1 := h.Acquire("a")
	w2 := h.Acquire("a")
	if w1 != w2 {
		t.Fatal("two Acquires gave two walls")
	}
	if w1 == w {
		t.Fatal("a dropped wall came back")
	}
	h.Release(w1)
	if h.Lookup("a") != w2 {
		t.Fatal("wall dropped while still in use")
	}
	h.Release(w2)
	if h.Lookup("a") != nil {
		t.Fatal("wall kept after its last Release")
	}

	// It stays when it holds messages.
	w = h.Acquire("b")
	applyRange(t, w, 1, 1)
	h.Release(w)
	if h.Lookup("b") != w {
		t.Fatal("wall with a message dropped")
	}

	// It stays while it has subscribers.
	w = h.Acquire("c")
	rec := &seqRecorder{}
	w.Subscribe(rec, Cursor{})
	h.Release(h.Acquire("c"))
	if h.Lookup("c") != w {
		t.Fatal("wall with a subscriber dropped")
	}
	w.Unsubscribe(rec)
	h.Release(w)
	if h.Lookup("c") != nil {
		t.Fatal("wall kept after its subscriber and users left")
	}

	// Walls made for a broker are found by Lookup and Names.
	if h.Wall("d") != h.Lookup("d") || h.Lookup("d") == nil {
		t.Fatal("Wall did not register the wall")
	}
	h.Acquire("0")
	if got := h.Names(); !slices.Equal(got, []string{"0", "b", "d"}) {
		t.Fatalf("Names = %v", got)
	}
}

func TestHubClose(t *testing.T) {
	h := NewHub(1)
	select {
	case <-h.Done():
		t.Fatal("Done closed before Close")
	default:
	}
	h.Close()
	h.Close() // idempotent
	select {
	case <-h.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

// interestLog is an Interest that records its calls per wall. While called
// it uses the hub (Lookup, Names), which would deadlock if the hub held its
// lock during the call.
type interestLog struct {
	hub    *Hub
	mu     sync.Mutex
	events map[string][]bool // true: WallActive
}

func (l *interestLog) WallActive(name string) { l.record(name, true) }
func (l *interestLog) WallIdle(name string)   { l.record(name, false) }

func (l *interestLog) record(name string, active bool) {
	if w := l.hub.Lookup(name); w != nil {
		_ = w.Last() // nor the wall's lock
	}
	_ = l.hub.Names()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events[name] = append(l.events[name], active)
}

func (l *interestLog) get(name string) []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events[name])
}

func TestHubInterest(t *testing.T) {
	h := NewHub(10)
	l := &interestLog{hub: h, events: map[string][]bool{}}
	before := h.Acquire("early") // a user before the Interest is set
	h.SetInterest(l)
	if got := l.get("early"); !slices.Equal(got, []bool{true}) {
		t.Fatalf("SetInterest told %v for a wall in use, want [active]", got)
	}

	a1 := h.Acquire("a")
	if got := l.get("a"); !slices.Equal(got, []bool{true}) {
		t.Fatalf("first Acquire: %v, want [active] before it returns", got)
	}
	a2 := h.Acquire("a")
	a2.Subscribe(&seqRecorder{}, Cursor{}) // a subscriber counts through its Acquire
	h.Release(a1)
	if got := l.get("a"); !slices.Equal(got, []bool{true}) {
		t.Fatalf("a user left, one remains: %v, want [active]", got)
	}
	h.Release(a2)
	if got := l.get("a"); !slices.Equal(got, []bool{true, false}) {
		t.Fatalf("last Release: %v, want [active idle]", got)
	}
	// A wall dropped and created again is the same name to the Interest.
	h.Release(h.Acquire("b"))
	h.Release(h.Acquire("b"))
	if got := l.get("b"); !slices.Equal(got, []bool{true, false, true, false}) {
		t.Fatalf("wall b: %v", got)
	}
	h.Release(before)
	if got := l.get("early"); !slices.Equal(got, []bool{true, false}) {
		t.Fatalf("wall early: %v", got)
	}
	if _, ok := l.events["other"]; ok {
		t.Fatal("told about a wall nobody used")
	}
	// Hub.Wall does not count a user.
	h.Wall("c")
	if got := l.get("c"); len(got) != 0 {
		t.Fatalf("Hub.Wall told %v", got)
	}
}

// TestHubInterestConcurrent: with many users coming and going at once,
// each wall's calls alternate, start with WallActive and end matching the
// wall's state (idle once everyone left).
func TestHubInterestConcurrent(t *testing.T) {
	h := NewHub(10)
	l := &interestLog{hub: h, events: map[string][]bool{}}
	h.SetInterest(l)
	names := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				w := h.Acquire(names[(g+i)%len(names)])
				if i%3 == 0 {
					runtime.Gosched()
				}
				h.Release(w)
			}
		})
	}
	wg.Wait()
	for _, n := range names {
		ev := l.get(n)
		if len(ev) == 0 || len(ev)%2 != 0 {
			t.Errorf("wall %s: %d calls, want an even number > 0", n, len(ev))
		}
		for i, active := range ev {
			if active != (i%2 == 0) {
				t.Fatalf("wall %s: call %d is active=%v; calls must alternate from WallActive", n, i, active)
			}
		}
	}
}
