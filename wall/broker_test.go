package wall

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestMemoryBrokerPublish(t *testing.T) {
	h := NewHub(10)
	b := NewMemoryBroker(h)
	ctx := context.Background()
	const id = "0b5f8ea4-1c1e-4c1e-9a4e-2f0b7a1c3d5e"
	before := time.Now().UnixMilli()
	m, stored, err := b.Publish(ctx, Post{Wall: "a", ID: id, Body: "see www.x.com", User: "mary"})
	if err != nil || !stored {
		t.Fatal(stored, err)
	}
	if m.Time < before || m.Time > time.Now().UnixMilli() || m.User != "mary" {
		t.Fatalf("time %d (posted at %d), user %q", m.Time, before, m.User)
	}
	if len(m.Epoch) != 16 || m.Epoch != h.Lookup("a").Epoch() {
		t.Fatalf("message epoch %q, wall's %q: want the hub's 16-hex epoch", m.Epoch, h.Lookup("a").Epoch())
	}
	want := Build(Message{ID: id, Seq: 1, Epoch: m.Epoch, User: "mary", Time: m.Time, Body: "see www.x.com"})
	if m.ID != want.ID || m.Seq != 1 || m.Body != want.Body || m.HTML != want.HTML || string(m.JSON) != string(want.JSON) {
		t.Fatalf("Publish = %+v, want %+v", m, want)
	}
	w := h.Lookup("a")
	if w == nil || !slices.Equal(w.Messages(), []*Message{m}) {
		t.Fatal("published message not in the cache")
	}
	if err := b.Sync(ctx, "a", Cursor{Set: true, Seq: 1}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// TestMemoryBrokerWallsIndependent checks that every wall numbers its own
// messages from 1.
func TestMemoryBrokerWallsIndependent(t *testing.T) {
	h := NewHub(10)
	b := NewMemoryBroker(h)
	ctx := context.Background()
	for i, name := range []string{"a", "b", "a", "c", "a", "b"} {
		m, _, err := b.Publish(ctx, Post{Wall: name, ID: fmt.Sprint(i), Body: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[int]uint64{0: 1, 1: 1, 2: 2, 3: 1, 4: 3, 5: 2}[i]; m.Seq != want {
			t.Errorf("publish %d to %s: seq %d, want %d", i, name, m.Seq, want)
		}
	}
	for name, n := range map[string]int{"a": 3, "b": 2, "c": 1} {
		if got := len(h.Lookup(name).Messages()); got != n {
			t.Errorf("wall %s holds %d messages, want %d", name, got, n)
		}
	}
}

func TestMemoryBrokerCancelledContext(t *testing.T) {
	h := NewHub(10)
	b := NewMemoryBroker(h)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, _, err := b.Publish(ctx, Post{Wall: "a", ID: "id", Body: "x"}); !errors.Is(err, context.Canceled) || m != nil {
		t.Fatalf("Publish with a cancelled ctx = %v, %v", m, err)
	}
	if h.Lookup("a") != nil {
		t.Fatal("a cancelled Publish created a wall")
	}
	if _, _, err := b.Publish(context.Background(), Post{Wall: "a", ID: "id1", Body: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Publish(ctx, Post{Wall: "a", ID: "id2", Body: "x"}); err == nil {
		t.Fatal("Publish with a cancelled ctx succeeded")
	}
	if w := h.Lookup("a"); w.Last() != 1 || len(w.Messages()) != 1 {
		t.Fatalf("a cancelled Publish stored something: last %d", w.Last())
	}
}

// TestMemoryBrokerConcurrentPublish publishes from many goroutines to one
// wall while pollers come and go: seqs are 1..N with no gap or repeat, each
// message is cached when its Publish returns, and a subscriber sees them all
// in order.
func TestMemoryBrokerConcurrentPublish(t *testing.T) {
	const posters, per = 16, 50
	h := NewHub(posters * per)
	b := NewMemoryBroker(h)
	ctx := context.Background()

	sub := h.Acquire("a")
	rec := &seqRecorder{}
	sub.Subscribe(rec, Cursor{})

	var wg sync.WaitGroup
	seqs := make(chan uint64, posters*per)
	for p := range posters {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range per {
				id := fmt.Sprintf("%d-%d", p, i)
				m, _, err := b.Publish(ctx, Post{Wall: "a", ID: id, Body: "body " + id})
				if err != nil {
					t.Error(err)
					return
				}
				if m.ID != id || m.Body != "body "+id {
					t.Errorf("Publish returned %+v for %s", m, id)
				}
				if w := h.Lookup("a"); w == nil || !w.Has(Cursor{Set: true, ID: id}) {
					t.Errorf("message %s not cached when Publish returned", id)
				}
				seqs <- m.Seq
				// "b" has no lasting user: only these posts and the
				// pollers below, which may drop it while it is empty.
				if _, _, err := b.Publish(ctx, Post{Wall: "b", ID: id, Body: "x"}); err != nil {
					t.Error(err)
				}
			}
		}()
		go func() { // pollers that come and go
			defer wg.Done()
			for range per {
				for _, name := range []string{"a", "b"} {
					w := h.Acquire(name)
					w.Poll(Cursor{})
					h.Release(w)
				}
			}
		}()
	}
	wg.Wait()
	close(seqs)
	var got []uint64
	for s := range seqs {
		got = append(got, s)
	}
	slices.Sort(got)
	if want := seqRange(1, posters*per); !slices.Equal(got, want) {
		t.Fatalf("published seqs are not 1..%d: %v", posters*per, got)
	}
	if live := rec.got(); !slices.Equal(live, seqRange(1, posters*per)) {
		t.Fatalf("subscriber got %d messages, not 1..%d in order", len(live), posters*per)
	}
	if got := seqsOf(h.Lookup("a").Messages()); !slices.Equal(got, seqRange(1, posters*per)) {
		t.Fatalf("cache holds %d messages, not 1..%d", len(got), posters*per)
	}
	if got := seqsOf(h.Lookup("b").Messages()); !slices.Equal(got, seqRange(1, posters*per)) {
		t.Fatalf("wall b holds %d messages, not 1..%d", len(got), posters*per)
	}
}

func TestMemoryBrokerRun(t *testing.T) {
	b := NewMemoryBroker(NewHub(1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned before ctx was done: %v", err)
	case <-time.After(10 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestMemoryBrokerRestartResets is the restart bug: a page open across a
// restart of the in-memory server, 7 posts after it, showed 5 messages the
// server no longer had and skipped the first 5 new ones, because its seq
// cursor was read in the new numbering. Each process start (a new
// Hub+MemoryBroker) has its own epoch, so the old cursor gets the whole
// cache with Reset, by Poll, Subscribe and Has alike.
func TestMemoryBrokerRestartResets(t *testing.T) {
	ctx := context.Background()
	publish := func(b *MemoryBroker, n int) *Message {
		var m *Message
		for i := range n {
			var err error
			if m, _, err = b.Publish(ctx, Post{Wall: "main", ID: fmt.Sprint(i), Body: fmt.Sprint("post ", i)}); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	before := NewHub(10)
	last := publish(NewMemoryBroker(before), 5)
	cursor, _ := ParseCursor(last.Cursor().String()) // what the page holds: "5.<epoch>"

	after := NewHub(10) // the restarted process
	publish(NewMemoryBroker(after), 7)
	w := after.Lookup("main")
	if w.Epoch() == before.Lookup("main").Epoch() || w.Epoch() == "" {
		t.Fatalf("epoch %q after a restart, %q before: want a new one", w.Epoch(), before.Lookup("main").Epoch())
	}
	if w.Has(cursor) {
		t.Fatalf("Has(%v) on the restarted wall", cursor)
	}
	r, _ := w.Poll(cursor)
	if !r.Reset || len(r.Messages) != 7 || r.Messages[0].Seq != 1 {
		t.Fatalf("Poll(%v) after a restart: %d messages, reset %v; want all 7 with reset", cursor, len(r.Messages), r.Reset)
	}
	s := &seqRecorder{}
	if r := w.Subscribe(s, cursor); !r.Reset || len(r.Messages) != 7 {
		t.Fatalf("Subscribe(%v) after a restart: %d messages, reset %v; want all 7 with reset", cursor, len(r.Messages), r.Reset)
	}
	// The same cursor in the current epoch is a position.
	cur := Cursor{Set: true, Seq: 5, Epoch: w.Epoch()}
	if r, _ := w.Poll(cur); r.Reset || len(r.Messages) != 2 || r.Messages[0].Seq != 6 || !w.Has(cur) {
		t.Fatalf("Poll(%v): %d messages, reset %v; want 6 and 7", cur, len(r.Messages), r.Reset)
	}
	// A part-2 client's plain seq is still taken in the current epoch.
	if r, _ := w.Poll(Cursor{Set: true, Seq: 5}); r.Reset || len(r.Messages) != 2 {
		t.Fatalf("plain seq 5: %d messages, reset %v; want 2", len(r.Messages), r.Reset)
	}
}

// TestWallEpochApply: Apply refuses a message of another epoch (the broker
// must Replace), and a wall without an epoch takes its first message's.
func TestWallEpochApply(t *testing.T) {
	w := newWall("w", 10, "")
	if err := w.Apply(NewMessage("a", 1, "e1", "x")); err != nil {
		t.Fatal(err)
	}
	if w.Epoch() != "e1" {
		t.Fatalf("epoch %q after the first message, want e1", w.Epoch())
	}
	if err := w.Apply(NewMessage("b", 2, "e2", "x")); !errors.Is(err, ErrEpoch) {
		t.Fatalf("Apply of another epoch: %v, want ErrEpoch", err)
	}
	w.Replace([]*Message{NewMessage("c", 1, "e2", "y")}, "e2")
	if w.Epoch() != "e2" || w.Last() != 1 {
		t.Fatalf("after Replace: epoch %q last %d", w.Epoch(), w.Last())
	}
	msgs, c := w.Snapshot()
	if len(msgs) != 1 || c != msgs[0].Cursor() {
		t.Fatalf("Snapshot = %v, %+v", msgs, c)
	}
}

// TestMemoryBrokerIdempotent: a post whose id the wall still caches stores
// nothing and answers the stored message; once evicted, the id is new.
func TestMemoryBrokerIdempotent(t *testing.T) {
	h := NewHub(3)
	b := NewMemoryBroker(h)
	ctx := context.Background()
	const id = "11111111-2222-4333-8444-555555555555"
	first, stored, err := b.Publish(ctx, Post{Wall: "a", ID: id, Body: "once", User: "mary"})
	if err != nil || !stored {
		t.Fatal(stored, err)
	}
	again, stored, err := b.Publish(ctx, Post{Wall: "a", ID: id, Body: "a retry's body is not stored", User: "bob"})
	if err != nil || stored || again != first {
		t.Fatalf("retry: stored %v, %+v, %v; want the first message", stored, again, err)
	}
	if last := h.Lookup("a").Last(); last != 1 {
		t.Fatalf("retry stored something: last %d", last)
	}
	// The same id on another wall is another message.
	if _, stored, err := b.Publish(ctx, Post{Wall: "b", ID: id, Body: "other wall"}); err != nil || !stored {
		t.Fatalf("same id, other wall: stored %v, %v", stored, err)
	}
	for i := 0; i < 3; i++ { // evict the first
		if _, _, err := b.Publish(ctx, Post{Wall: "a", ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Body: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	m, stored, err := b.Publish(ctx, Post{Wall: "a", ID: id, Body: "late"})
	if err != nil || !stored || m.Seq != 5 {
		t.Fatalf("id evicted from the history: stored %v, seq %d, %v; want stored as seq 5", stored, m.Seq, err)
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"11111111-2222-4333-8444-555555555555":  true,
		"0b5f8ea4-1c1e-4c1e-9a4e-2f0b7a1c3d5e":  true,
		"0B5F8EA4-1C1E-4C1E-9A4E-2F0B7A1C3D5E":  false, // uppercase
		"11111111-2222-1333-8444-555555555555":  false, // version 1
		"11111111-2222-4333-c444-555555555555":  false, // variant
		"11111111-2222-4333-8444-55555555555":   false,
		"11111111-2222-4333-8444-5555555555555": false,
		"111111112222-4333-8444-5555555555555":  false,
		"1111111g-2222-4333-8444-555555555555":  false,
		"":                                      false,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}
