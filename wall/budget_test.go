package wall

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// transportSub is a subscriber that names its transport.
type transportSub struct{ t string }

func (*transportSub) Send(*Message)       {}
func (*transportSub) Reset([]*Message)    {}
func (s *transportSub) Transport() string { return s.t }

// plainSub is a subscriber that names no transport.
type plainSub struct{ _ int }

func (*plainSub) Send(*Message)    {}
func (*plainSub) Reset([]*Message) {}

// audit recomputes the hub's account from its walls, checking each
// cache's count against its messages, and returns it.
func audit(t *testing.T, h *Hub) int64 {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var sum int64
	for _, w := range h.walls {
		w.mu.Lock()
		var msgs int64
		for _, m := range w.buf.Slice(0) {
			msgs += MessageBytes(m)
		}
		if msgs != w.buf.Bytes() {
			t.Errorf("wall %s: cache counts %d bytes, its messages hold %d", w.name, w.buf.Bytes(), msgs)
		}
		if w.hub != h {
			t.Errorf("wall %s held but detached", w.name)
		}
		sum += msgs + wallOverhead
		w.mu.Unlock()
	}
	if got := h.bytes.Load(); got != sum {
		t.Errorf("hub accounts %d bytes, its walls hold %d", got, sum)
	}
	return sum
}

func publish(t *testing.T, b *MemoryBroker, name, body string) *Message {
	t.Helper()
	m, _, err := b.Publish(context.Background(), Post{Wall: name, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBufferBytes: a buffer counts exactly what its messages hold, through
// pushes, overwrites of a full ring, drops and resets; DropOldest keeps
// the newest message whatever the limit.
func TestBufferBytes(t *testing.T) {
	b := NewBuffer(3)
	var ms []*Message
	for i := range 5 {
		m := NewMessage(fmt.Sprintf("id-%d", i), uint64(i+1), "e", strings.Repeat("é", i*100))
		ms = append(ms, m)
		b.Push(m)
	}
	want := MessageBytes(ms[2]) + MessageBytes(ms[3]) + MessageBytes(ms[4])
	if b.Bytes() != want {
		t.Fatalf("full ring: %d bytes, want %d", b.Bytes(), want)
	}
	if n := MessageBytes(ms[4]); n < int64(len(ms[4].JSON)+len(ms[4].HTML)+len(ms[4].Body)) {
		t.Fatalf("MessageBytes %d below the message's own bytes", n)
	}
	freed := b.DropOldest(MessageBytes(ms[4]) + MessageBytes(ms[3]))
	if freed != MessageBytes(ms[2]) || b.Len() != 2 || b.At(0) != ms[3] {
		t.Fatalf("DropOldest freed %d, left %d from seq %d", freed, b.Len(), b.At(0).Seq)
	}
	b.DropOldest(0)
	if b.Len() != 1 || b.At(0) != ms[4] || b.Bytes() != MessageBytes(ms[4]) {
		t.Fatalf("DropOldest(0) left %d messages, %d bytes; want the newest only", b.Len(), b.Bytes())
	}
	// The ring keeps working after drops: it fills up again to its size.
	for i := 6; i <= 9; i++ {
		b.Push(NewMessage(fmt.Sprintf("id-%d", i), uint64(i), "e", "x"))
	}
	if got := seqsOf(b.Slice(0)); fmt.Sprint(got) != "[7 8 9]" {
		t.Fatalf("after drops and pushes: %v", got)
	}
	b.Reset()
	if b.Bytes() != 0 || b.Len() != 0 {
		t.Fatalf("after Reset: %d bytes, %d messages", b.Bytes(), b.Len())
	}
}

// TestHubBudgetFlood: thousands of walls flooded with messages stay within
// the budget, the account matches what the walls hold, and walls in use
// (a user, a subscriber) keep their whole cache while idle walls go,
// least recently used first.
func TestHubBudgetFlood(t *testing.T) {
	const budget = 2 << 20
	h := NewHub(50)
	h.SetCacheBudget(budget)
	b := NewMemoryBroker(h)
	busy := h.Acquire("busy")
	sub := &transportSub{"websocket"}
	watched := h.Acquire("watched")
	watched.Subscribe(sub, Cursor{})
	h.Release(watched) // a subscriber alone keeps it in use
	for i := range 40 {
		publish(t, b, "busy", fmt.Sprintf("busy %d %s", i, strings.Repeat("ü", 200)))
		publish(t, b, "watched", fmt.Sprintf("watched %d", i))
	}
	for i := range 3000 {
		name := fmt.Sprintf("flood-%d", i)
		for j := range 4 {
			publish(t, b, name, fmt.Sprintf("%d %s", j, strings.Repeat("€x", 150)))
		}
		if i%500 == 0 {
			audit(t, h)
		}
	}
	got := audit(t, h)
	st := h.CacheStats()
	if got > budget || st.Bytes != got || st.Budget != budget {
		t.Fatalf("holds %d bytes (stats %+v), budget %d", got, st, budget)
	}
	if st.Evicted < 2000 || st.Trimmed != 0 {
		t.Fatalf("stats %+v: want thousands of idle walls evicted and no cache in use trimmed", st)
	}
	if busy.Last() != 40 || len(busy.Messages()) != 40 || h.Lookup("busy") != busy {
		t.Fatalf("the wall in use lost messages: last %d, %d cached", busy.Last(), len(busy.Messages()))
	}
	if w := h.Lookup("watched"); w != watched || len(w.Messages()) != 40 {
		t.Fatal("the subscribed wall was evicted or trimmed")
	}
	// Least recently used first: the newest flood walls are all there.
	for i := 2990; i < 3000; i++ {
		if w := h.Lookup(fmt.Sprintf("flood-%d", i)); w == nil || w.Last() != 4 {
			t.Fatalf("recent wall flood-%d evicted before older ones", i)
		}
	}
	if h.Lookup("flood-0") != nil {
		t.Fatal("the oldest idle wall is still held")
	}
	h.Release(busy)
	watched.Unsubscribe(sub)
}

// TestHubBudgetTrimsBusy: when the walls in use alone hold more than the
// budget, the biggest caches lose their oldest messages, down to one
// level, each keeping its newest; a cursor older than what is left gets
// the cache and "missed", as when the ring drops messages.
func TestHubBudgetTrimsBusy(t *testing.T) {
	h := NewHub(100)
	b := NewMemoryBroker(h)
	big, small := h.Acquire("big"), h.Acquire("small")
	defer h.Release(big)
	defer h.Release(small)
	for i := range 100 {
		publish(t, b, "big", strings.Repeat("b", 2000))
		if i < 10 {
			publish(t, b, "small", "s")
		}
	}
	before := audit(t, h)
	h.SetCacheBudget(before / 2)
	after := audit(t, h)
	if after > before/2 {
		t.Fatalf("holds %d bytes over the budget %d", after, before/2)
	}
	if n := len(small.Messages()); n != 10 {
		t.Fatalf("the small cache was trimmed to %d messages: only the biggest should be", n)
	}
	msgs := big.Messages()
	if len(msgs) == 0 || len(msgs) >= 100 || msgs[len(msgs)-1].Seq != 100 {
		t.Fatalf("big cache: %d messages, want its newest ones", len(msgs))
	}
	r, _ := big.Poll(Cursor{Set: true, Seq: 5, Epoch: big.Epoch()})
	if r.Reset || r.Missed != msgs[0].Seq-6 || len(r.Messages) != len(msgs) {
		t.Fatalf("cursor before the trimmed messages: %d messages, missed %d, reset %v", len(r.Messages), r.Missed, r.Reset)
	}
	if st := h.CacheStats(); st.Trimmed != int64(100-len(msgs)) || st.Evicted != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A budget smaller than one message per wall: each keeps its newest.
	h.SetCacheBudget(1)
	if len(big.Messages()) != 1 || len(small.Messages()) != 1 || big.Last() != 100 {
		t.Fatal("a cache in use lost its newest message")
	}
	audit(t, h)
}

// TestMemoryEvictedWallNewEpoch: with the in-process broker an evicted
// wall's history is gone; the wall created again numbers in a new epoch,
// so a cursor of the old numbering gets the new cache with "reset", never
// messages of the new numbering read as the old one's. Evicted again, it
// takes yet another epoch. A wall never evicted keeps the hub's epoch.
func TestMemoryEvictedWallNewEpoch(t *testing.T) {
	h := NewHub(10)
	b := NewMemoryBroker(h)
	base := h.epoch
	var old Cursor
	for range 5 {
		old = publish(t, b, "a", "old").Cursor()
	}
	if old.Epoch != base {
		t.Fatalf("first epoch %q, want the hub's %q", old.Epoch, base)
	}
	seen := map[string]bool{base: true}
	for round := range 3 {
		h.mu.Lock()
		if !h.evictLocked(h.walls["a"]) {
			t.Fatal("idle wall not evicted")
		}
		h.mu.Unlock()
		var m *Message
		for range 7 { // past the old cursor's seq
			m = publish(t, b, "a", "new")
		}
		if m.Seq != 7 || seen[m.Epoch] || len(m.Epoch) != 16 {
			t.Fatalf("round %d: seq %d epoch %q; want seq 7 in a new 16-digit epoch", round, m.Seq, m.Epoch)
		}
		seen[m.Epoch] = true
		w := h.Acquire("a")
		if w.Has(old) {
			t.Fatal("the wall places a cursor of its lost numbering")
		}
		r, _ := w.Poll(old)
		h.Release(w)
		if !r.Reset || len(r.Messages) != 7 {
			t.Fatalf("old cursor: %d messages, reset %v; want the whole cache and reset", len(r.Messages), r.Reset)
		}
		old = m.Cursor()
	}
	// An empty wall dropped at Release lost nothing: its epoch stays.
	w := h.Acquire("never")
	h.Release(w)
	if m := publish(t, b, "never", "x"); m.Epoch != base && h.epochGen[h.epochBucket("never")] == 0 {
		t.Fatalf("a wall never evicted numbers in %q, want %q", m.Epoch, base)
	}
}

// TestWallClients: subscribers are counted per transport as they come
// and go, a repeated Subscribe or Unsubscribe counting once.
func TestWallClients(t *testing.T) {
	w := newWall("w", 10, "")
	ws1, ws2, sse := &transportSub{"websocket"}, &transportSub{"websocket"}, &transportSub{"sse"}
	other := &plainSub{} // names no transport
	for _, s := range []Subscriber{ws1, ws2, sse, ws1} {
		w.Subscribe(s, Cursor{})
	}
	w.Subscribe(other, Cursor{})
	counts := func() map[string]int {
		m := map[string]int{}
		w.Clients(func(tr string, n int) { m[tr] = n })
		return m
	}
	if got := fmt.Sprint(counts()); got != "map[:1 sse:1 websocket:2]" {
		t.Fatalf("counts %s", got)
	}
	w.Unsubscribe(ws1)
	w.Unsubscribe(ws1)
	w.Unsubscribe(sse)
	if got := fmt.Sprint(counts()); got != "map[:1 websocket:1]" {
		t.Fatalf("counts after leaving %s", got)
	}
}

// TestMessageBytesMatchesHeap: what the budget counts is what the caches
// hold: the heap grown by thousands of cached messages of every kind
// (ASCII, non-ASCII that escapes to six bytes a rune, links, a signed
// author) is within a tenth of the hub's account.
func TestMessageBytesMatchesHeap(t *testing.T) {
	bodies := []string{
		strings.Repeat("plain ascii text ", 40),
		strings.Repeat("é€ü", 700),
		strings.Repeat("see https://example.com/a?b=c&d=<e> ", 30),
		"short",
	}
	var ms runtime.MemStats
	heap := func() int64 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	h := NewHub(50)
	b := NewMemoryBroker(h)
	before, charged := heap(), h.CacheStats().Bytes
	for i := range 4000 {
		body := bodies[i%len(bodies)] + strconv.Itoa(i) // a string of its own, as a request's
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		if _, _, err := b.Publish(context.Background(), Post{Wall: fmt.Sprintf("w%d", i%100), ID: id, Body: body, User: "mary"}); err != nil {
			t.Fatal(err)
		}
	}
	grown, counted := heap()-before, h.CacheStats().Bytes-charged
	t.Logf("4000 messages on 100 walls: heap grew %d bytes, the budget counts %d (%.3f)", grown, counted, float64(counted)/float64(grown))
	if counted < grown*9/10 || counted > grown*11/10 {
		t.Fatalf("heap grew %d bytes, the budget counts %d", grown, counted)
	}
	runtime.KeepAlive(h)
}
