package wall

import (
	"slices"
	"strings"
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
