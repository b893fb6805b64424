package wall

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// seqRecorder is a Subscriber that keeps what it is sent.
type seqRecorder struct {
	mu   sync.Mutex
	seqs []uint64
}

func (r *seqRecorder) Send(m *Message) {
	r.mu.Lock()
	r.seqs = append(r.seqs, m.Seq)
	r.mu.Unlock()
}

// Reset records the new cache as what the subscriber has.
func (r *seqRecorder) Reset(msgs []*Message) {
	r.mu.Lock()
	r.seqs = r.seqs[:0]
	for _, m := range msgs {
		r.seqs = append(r.seqs, m.Seq)
	}
	r.mu.Unlock()
}

func (r *seqRecorder) got() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func applyRange(t *testing.T, w *Wall, first, last uint64) {
	t.Helper()
	for s := first; s <= last; s++ {
		if err := w.Apply(testMsg(s)); err != nil {
			t.Fatalf("Apply(%d): %v", s, err)
		}
	}
}

func TestWallApplyOrder(t *testing.T) {
	tests := []struct {
		name  string
		seqs  []uint64
		errs  []error
		final []uint64
	}{
		{"consecutive from 1", []uint64{1, 2, 3}, []error{nil, nil, nil}, []uint64{1, 2, 3}},
		{"seq 0 on an empty wall", []uint64{0}, []error{ErrDuplicate}, []uint64{}},
		{"not starting at 1", []uint64{2}, []error{ErrGap}, []uint64{}},
		{"repeat", []uint64{1, 2, 2}, []error{nil, nil, ErrDuplicate}, []uint64{1, 2}},
		{"older", []uint64{1, 2, 3, 1}, []error{nil, nil, nil, ErrDuplicate}, []uint64{1, 2, 3}},
		{"gap then fill", []uint64{1, 3, 2, 3}, []error{nil, ErrGap, nil, nil}, []uint64{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWall("w", 10, "")
			rec := &seqRecorder{}
			w.Subscribe(rec, Cursor{})
			for i, s := range tt.seqs {
				if err := w.Apply(testMsg(s)); !errors.Is(err, tt.errs[i]) {
					t.Errorf("Apply(%d) = %v, want %v", s, err, tt.errs[i])
				}
			}
			if got := seqsOf(w.Messages()); !slices.Equal(got, tt.final) {
				t.Errorf("cache %v, want %v", got, tt.final)
			}
			if got := rec.got(); !slices.Equal(append([]uint64{}, got...), tt.final) {
				t.Errorf("subscriber got %v, want %v", got, tt.final)
			}
			wantLast := uint64(0)
			if n := len(tt.final); n > 0 {
				wantLast = tt.final[n-1]
			}
			if w.Last() != wantLast {
				t.Errorf("Last = %d, want %d", w.Last(), wantLast)
			}
		})
	}
}

func TestWallPoll(t *testing.T) {
	w := newWall("w", 3, "")
	r, ch := w.Poll(Cursor{})
	if len(r.Messages) != 0 || ch == nil {
		t.Fatalf("empty wall: %d messages, channel %v", len(r.Messages), ch)
	}
	if isClosed(ch) {
		t.Fatal("channel closed before any Apply")
	}
	if err := w.Apply(testMsg(2)); !errors.Is(err, ErrGap) || isClosed(ch) {
		t.Fatalf("a refused Apply: err %v, channel closed %v", err, isClosed(ch))
	}
	applyRange(t, w, 1, 1)
	if !isClosed(ch) {
		t.Fatal("channel not closed by Apply")
	}

	r, ch = w.Poll(Cursor{})
	if got := seqsOf(r.Messages); !slices.Equal(got, []uint64{1}) || ch != nil {
		t.Fatalf("no cursor after 1 message: %v, channel %v", got, ch)
	}

	r, ch = w.Poll(Cursor{Set: true, Seq: 1})
	if len(r.Messages) != 0 || ch == nil || isClosed(ch) {
		t.Fatalf("cursor at last: %d messages, channel %v", len(r.Messages), ch)
	}
	r2, ch2 := w.Poll(Cursor{Set: true, ID: "id-1"})
	if len(r2.Messages) != 0 || ch2 != ch {
		t.Fatalf("id cursor at last: %d messages, another channel", len(r2.Messages))
	}
	if err := w.Apply(testMsg(1)); !errors.Is(err, ErrDuplicate) || isClosed(ch) {
		t.Fatalf("duplicate Apply: err %v, channel closed %v", err, isClosed(ch))
	}
	applyRange(t, w, 2, 6)
	if !isClosed(ch) {
		t.Fatal("channel not closed by Apply")
	}

	r, _ = w.Poll(Cursor{Set: true, Seq: 1})
	if got := seqsOf(r.Messages); !slices.Equal(got, []uint64{4, 5, 6}) || r.Missed != 2 || r.Reset {
		t.Fatalf("evicted seq cursor: %v missed %d reset %v", got, r.Missed, r.Reset)
	}
	r, _ = w.Poll(Cursor{Set: true, ID: "id-1"})
	if got := seqsOf(r.Messages); !slices.Equal(got, []uint64{4, 5, 6}) || !r.Reset {
		t.Fatalf("evicted id cursor: %v reset %v", got, r.Reset)
	}
}

func TestWallSubscribe(t *testing.T) {
	w := newWall("w", 5, "")
	applyRange(t, w, 1, 7)
	tests := []struct {
		name   string
		c      Cursor
		catch  []uint64
		missed uint64
		reset  bool
	}{
		{"no cursor: live only", Cursor{}, []uint64{}, 0, false},
		{"seq at last", Cursor{Set: true, Seq: 7}, []uint64{}, 0, false},
		{"seq inside", Cursor{Set: true, Seq: 4}, []uint64{5, 6, 7}, 0, false},
		{"seq evicted", Cursor{Set: true, Seq: 0}, []uint64{3, 4, 5, 6, 7}, 2, false},
		{"id inside", Cursor{Set: true, ID: "id-6"}, []uint64{7}, 0, false},
		{"unknown id", Cursor{Set: true, ID: "x"}, []uint64{3, 4, 5, 6, 7}, 0, true},
		{"future seq", Cursor{Set: true, Seq: 9}, []uint64{3, 4, 5, 6, 7}, 0, true},
	}
	recs := make([]*seqRecorder, len(tests))
	for i, tt := range tests {
		recs[i] = &seqRecorder{}
		r := w.Subscribe(recs[i], tt.c)
		if got := seqsOf(r.Messages); !slices.Equal(got, tt.catch) || r.Missed != tt.missed || r.Reset != tt.reset {
			t.Errorf("%s: catch-up %v missed %d reset %v; want %v %d %v", tt.name, got, r.Missed, r.Reset, tt.catch, tt.missed, tt.reset)
		}
	}
	if n := w.Subscribers(); n != len(tests) {
		t.Fatalf("Subscribers = %d, want %d", n, len(tests))
	}
	applyRange(t, w, 8, 8)
	w.Unsubscribe(recs[0])
	w.Unsubscribe(recs[0]) // twice is fine
	applyRange(t, w, 9, 9)
	if got := recs[0].got(); !slices.Equal(got, []uint64{8}) {
		t.Errorf("unsubscribed seqRecorder got %v, want [8]", got)
	}
	for i := 1; i < len(recs); i++ {
		if got := recs[i].got(); !slices.Equal(got, []uint64{8, 9}) {
			t.Errorf("%s: live %v, want [8 9]", tests[i].name, got)
		}
	}
	if n := w.Subscribers(); n != len(tests)-1 {
		t.Fatalf("Subscribers = %d, want %d", n, len(tests)-1)
	}
}

// TestWallSubscribeConcurrent subscribes while messages are applied: the
// catch-up and the live messages together must be every seq after the
// cursor, exactly once and in order.
func TestWallSubscribeConcurrent(t *testing.T) {
	const total = 2000
	w := newWall("w", total, "")
	type sub struct {
		rec    *seqRecorder
		cursor Cursor
		catch  []uint64
	}
	subs := make(chan sub, 8*total)
	var joins atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			joined := false
			prev := uint64(0)
			for last := w.Last(); last < total; last = w.Last() {
				// Join every few messages, so joins spread over the run.
				if joined && last < prev+5 {
					runtime.Gosched()
					continue
				}
				joined, prev = true, last
				s := sub{rec: &seqRecorder{}}
				switch rng.IntN(4) {
				case 0:
					// live only
				case 1:
					s.cursor = Cursor{Set: true, Seq: last}
				case 2:
					s.cursor = Cursor{Set: true, Seq: rng.Uint64N(last + 1)}
				case 3:
					if last > 0 {
						s.cursor = Cursor{Set: true, ID: testMsg(1 + rng.Uint64N(last)).ID}
					}
				}
				r := w.Subscribe(s.rec, s.cursor)
				if r.Missed != 0 || r.Reset {
					t.Errorf("cursor %+v: missed %d reset %v", s.cursor, r.Missed, r.Reset)
				}
				s.catch = seqsOf(r.Messages)
				joins.Add(1)
				subs <- s
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var mu sync.Mutex // appliers race for the next seq through sequence
		var inner sync.WaitGroup
		for range 4 {
			inner.Add(1)
			go func() {
				defer inner.Done()
				for {
					// Let the joins keep up, so they spread over the run
					// (the joiners stop at total, so the wait does too).
					for last := w.Last(); joins.Load() < int64(last/10) && last < total; last = w.Last() {
						runtime.Gosched()
					}
					mu.Lock()
					done := w.Last() >= total
					if !done {
						w.sequence("", func(seq uint64, _ string) *Message { return testMsg(seq) })
					}
					mu.Unlock()
					if done {
						return
					}
				}
			}()
		}
		inner.Wait()
	}()
	wg.Wait()
	close(subs)
	n := 0
	for s := range subs {
		n++
		got := append(s.catch, s.rec.got()...)
		var first uint64
		switch {
		case s.cursor.ID != "":
			var id uint64
			for i := uint64(1); i <= total; i++ {
				if testMsg(i).ID == s.cursor.ID {
					id = i
				}
			}
			first = id + 1
		case s.cursor.Set:
			first = s.cursor.Seq + 1
		case len(got) > 0:
			first = got[0] // live only: from wherever it joined
		default:
			first = total + 1
		}
		if want := seqRange(first, total); !slices.Equal(got, want) {
			t.Fatalf("cursor %+v: got %d seqs %v, want %d..%d", s.cursor, len(got), got[:min(len(got), 20)], first, total)
		}
	}
	if n == 0 {
		t.Fatal("no subscriber ran")
	}
	t.Logf("%d subscribers checked", n)
}

func TestWallRestore(t *testing.T) {
	w := newWall("w", 4, "")
	applyRange(t, w, 1, 3)
	rec := &seqRecorder{}
	w.Subscribe(rec, Cursor{})
	_, ch := w.Poll(Cursor{Set: true, Seq: 3})

	// Further along, and more than the cache holds.
	var msgs []*Message
	for s := uint64(2); s <= 8; s++ {
		msgs = append(msgs, testMsg(s))
	}
	w.Restore(msgs, "")
	if !isClosed(ch) {
		t.Fatal("Restore did not wake pollers")
	}
	if w.Last() != 8 {
		t.Fatalf("Last = %d, want 8", w.Last())
	}
	if got := seqsOf(w.Messages()); !slices.Equal(got, []uint64{5, 6, 7, 8}) {
		t.Fatalf("cache %v, want [5 6 7 8]", got)
	}
	if got := rec.got(); !slices.Equal(got, []uint64{4, 5, 6, 7, 8}) {
		t.Fatalf("subscriber got %v, want the restored messages after 3", got)
	}
	if err := w.Apply(testMsg(9)); err != nil {
		t.Fatalf("Apply after Restore: %v", err)
	}

	// Another epoch, numbered from 1 again.
	w.Restore([]*Message{testMsg(1), testMsg(2)}, "")
	if w.Last() != 2 {
		t.Fatalf("Last = %d after restoring an older numbering, want 2", w.Last())
	}
	r, _ := w.Poll(Cursor{Set: true, Seq: 9})
	if got := seqsOf(r.Messages); !slices.Equal(got, []uint64{1, 2}) || !r.Reset {
		t.Fatalf("cursor from the old epoch: %v reset %v; want [1 2] reset", got, r.Reset)
	}
	if err := w.Apply(testMsg(3)); err != nil {
		t.Fatalf("Apply after Restore: %v", err)
	}

	// Nothing to restore: the cache empties, the numbering stays.
	w.Restore(nil, "")
	if len(w.Messages()) != 0 || w.Last() != 3 {
		t.Fatalf("Restore(nil): %d messages, Last %d", len(w.Messages()), w.Last())
	}
	if err := w.Apply(testMsg(4)); err != nil {
		t.Fatalf("Apply after Restore(nil): %v", err)
	}
}

func TestWallWaitApplied(t *testing.T) {
	ctx := context.Background()
	w := newWall("w", 3, "")
	applyRange(t, w, 1, 5)

	if m, err := w.WaitApplied(ctx, 4); err != nil || m == nil || m.Seq != 4 {
		t.Fatalf("WaitApplied(4) = %v, %v", m, err)
	}
	if m, err := w.WaitApplied(ctx, 1); err != nil || m != nil {
		t.Fatalf("WaitApplied of an evicted seq = %v, %v; want nil, nil", m, err)
	}

	done := make(chan *Message)
	go func() {
		m, err := w.WaitApplied(ctx, 7)
		if err != nil {
			t.Error(err)
		}
		done <- m
	}()
	applyRange(t, w, 6, 6)
	select {
	case m := <-done:
		t.Fatalf("WaitApplied(7) returned %v after seq 6", m)
	case <-time.After(20 * time.Millisecond):
	}
	applyRange(t, w, 7, 8)
	select {
	case m := <-done:
		if m == nil || m.Seq != 7 {
			t.Fatalf("WaitApplied(7) = %v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitApplied(7) did not return after seq 7 was applied")
	}

	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error)
	go func() {
		_, err := w.WaitApplied(cctx, 100)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitApplied after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitApplied ignored its context")
	}

	// Already applied wins over an expired context.
	if m, err := w.WaitApplied(cctx, 8); err != nil || m == nil || m.Seq != 8 {
		t.Fatalf("WaitApplied(8) with a cancelled ctx = %v, %v", m, err)
	}
}

func TestWallHas(t *testing.T) {
	w := newWall("w", 3, "")
	if !w.Has(Cursor{}) || !w.Has(Cursor{Set: true, Seq: 0}) || w.Has(Cursor{Set: true, Seq: 1}) || w.Has(Cursor{Set: true, ID: "id-1"}) {
		t.Fatal("empty wall: wrong Has")
	}
	applyRange(t, w, 1, 5)
	tests := []struct {
		c    Cursor
		want bool
	}{
		{Cursor{}, true},
		{Cursor{Set: true, Seq: 0}, true},
		{Cursor{Set: true, Seq: 1}, true}, // evicted, but applied
		{Cursor{Set: true, Seq: 5}, true},
		{Cursor{Set: true, Seq: 6}, false},
		{Cursor{Set: true, ID: "id-3"}, true},
		{Cursor{Set: true, ID: "id-5"}, true},
		{Cursor{Set: true, ID: "id-2"}, false}, // evicted: cannot be placed
		{Cursor{Set: true, ID: "nope"}, false},
	}
	for _, tt := range tests {
		if got := w.Has(tt.c); got != tt.want {
			t.Errorf("Has(%+v) = %v, want %v", tt.c, got, tt.want)
		}
	}
}

// Replace swaps in a history that does not continue the wall's: live
// subscribers are reset to it, and old seq cursors past it get a reset.
func TestWallReplace(t *testing.T) {
	w := newWall("w", 10, "")
	for i := uint64(1); i <= 5; i++ {
		if err := w.Apply(testMsg(i)); err != nil {
			t.Fatal(err)
		}
	}
	sub := &seqRecorder{}
	w.Subscribe(sub, Cursor{})
	_, changed := w.Poll(Cursor{Set: true, Seq: 5})
	w.Replace([]*Message{testMsg(1), testMsg(2)}, "")
	if !isClosed(changed) {
		t.Fatal("Replace did not wake pollers")
	}
	if got := sub.got(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("subscriber holds %v after Replace, want [1 2]", got)
	}
	if w.Last() != 2 {
		t.Fatalf("last %d, want 2", w.Last())
	}
	if r, _ := w.Poll(Cursor{Set: true, Seq: 5}); !r.Reset || len(r.Messages) != 2 {
		t.Fatalf("old cursor after Replace: %+v", r)
	}
	w.Apply(testMsg(3))
	if got := sub.got(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("subscriber after the next message: %v", got)
	}
}
