package wall

import "testing"

// TestHubEvict: a wall in use (a user, a subscriber) is kept with its
// cache; an unused one is dropped, and the next Acquire gets a new, empty
// wall.
func TestHubEvict(t *testing.T) {
	h := NewHub(10)
	w := h.Acquire("w")
	if err := w.Apply(Build(Message{ID: "a", Seq: 1, Epoch: "e", Body: "x"})); err != nil {
		t.Fatal(err)
	}
	if h.Evict("w") {
		t.Fatal("evicted a wall with a user")
	}
	h.Release(w)
	s := &nopSub{}
	w.Subscribe(s, Cursor{})
	if h.Evict("w") {
		t.Fatal("evicted a wall with a subscriber")
	}
	w.Unsubscribe(s)
	if h.Lookup("w") != w || !h.Evict("w") || h.Lookup("w") != nil {
		t.Fatal("an unused wall with messages was not evicted")
	}
	if !h.Evict("absent") {
		t.Fatal("Evict of a wall the hub does not hold")
	}
	if n := h.Acquire("w"); n == w || n.Last() != 0 || len(n.Messages()) != 0 {
		t.Fatal("Acquire after Evict returned the old wall or its cache")
	}
}

type nopSub struct{}

func (nopSub) Send(*Message)    {}
func (nopSub) Reset([]*Message) {}
