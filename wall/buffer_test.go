package wall

import (
	"fmt"
	"slices"
	"testing"
)

func testMsg(seq uint64) *Message {
	return &Message{ID: fmt.Sprintf("id-%d", seq), Seq: seq}
}

// filledBuffer returns a buffer of the given size after pushing seqs
// first..last.
func filledBuffer(size int, first, last uint64) *Buffer {
	b := NewBuffer(size)
	for s := first; s <= last && s != 0; s++ {
		b.Push(testMsg(s))
	}
	return &b
}

func seqsOf(ms []*Message) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func seqRange(first, last uint64) []uint64 {
	out := []uint64{}
	for s := first; s <= last; s++ {
		out = append(out, s)
	}
	return out
}

func TestBufferGrowsLazily(t *testing.T) {
	b := NewBuffer(200)
	if b.Len() != 0 || cap(b.ring) != 0 {
		t.Fatalf("empty buffer: len %d cap %d, want 0 0", b.Len(), cap(b.ring))
	}
	for i := uint64(1); i <= 3; i++ {
		b.Push(testMsg(i))
	}
	if b.Len() != 3 || cap(b.ring) >= 200 {
		t.Fatalf("after 3 pushes: len %d cap %d, want 3 and far below 200", b.Len(), cap(b.ring))
	}
	for i := uint64(4); i <= 500; i++ {
		b.Push(testMsg(i))
	}
	if b.Len() != 200 {
		t.Fatalf("after 500 pushes: len %d, want 200", b.Len())
	}
	if got := seqsOf(b.Slice(0)); !slices.Equal(got, seqRange(301, 500)) {
		t.Fatalf("after 500 pushes: %v", got)
	}
}

func TestBufferSizeAtLeastOne(t *testing.T) {
	for _, size := range []int{0, -5} {
		b := NewBuffer(size)
		b.Push(testMsg(1))
		b.Push(testMsg(2))
		if got := seqsOf(b.Slice(0)); !slices.Equal(got, []uint64{2}) {
			t.Errorf("NewBuffer(%d) after 2 pushes holds %v, want [2]", size, got)
		}
	}
}

func TestBufferEvictionOrder(t *testing.T) {
	for pushed := uint64(0); pushed <= 12; pushed++ {
		b := filledBuffer(4, 1, pushed)
		first := uint64(1)
		if pushed > 4 {
			first = pushed - 3
		}
		want := seqRange(first, pushed)
		if b.Len() != len(want) {
			t.Fatalf("pushed %d: Len %d, want %d", pushed, b.Len(), len(want))
		}
		for i, s := range want {
			if got := b.At(i).Seq; got != s {
				t.Errorf("pushed %d: At(%d) = %d, want %d", pushed, i, got, s)
			}
		}
		for i := 0; i <= len(want)+1; i++ {
			wantSlice := []uint64{}
			if i < len(want) {
				wantSlice = want[i:]
			}
			if got := seqsOf(b.Slice(i)); !slices.Equal(got, wantSlice) {
				t.Errorf("pushed %d: Slice(%d) = %v, want %v", pushed, i, got, wantSlice)
			}
		}
	}
}

func TestBufferSliceIsACopy(t *testing.T) {
	b := filledBuffer(3, 1, 3)
	s := b.Slice(0)
	b.Push(testMsg(4))
	if got := seqsOf(s); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("slice changed under a later push: %v", got)
	}
}

func TestBufferReset(t *testing.T) {
	b := filledBuffer(3, 1, 5) // wrapped: head != 0
	b.Reset()
	if b.Len() != 0 || b.Slice(0) != nil {
		t.Fatalf("after Reset: Len %d, Slice %v", b.Len(), b.Slice(0))
	}
	b.Push(testMsg(10))
	b.Push(testMsg(11))
	if got := seqsOf(b.Slice(0)); !slices.Equal(got, []uint64{10, 11}) {
		t.Fatalf("after Reset and 2 pushes: %v", got)
	}
}

func TestBufferSince(t *testing.T) {
	seq := func(n uint64) Cursor { return Cursor{Set: true, Seq: n} }
	id := func(s string) Cursor { return Cursor{Set: true, ID: s} }
	tests := []struct {
		name        string
		first, last uint64 // seqs pushed into a buffer of size 5; 0,0 = empty
		c           Cursor
		want        []uint64
		missed      uint64
		reset       bool
	}{
		{"empty, no cursor", 0, 0, Cursor{}, nil, 0, false},
		{"empty, seq 0", 0, 0, seq(0), nil, 0, false},
		{"empty, future seq", 0, 0, seq(3), nil, 0, true},
		{"empty, id", 0, 0, id("id-1"), nil, 0, true},

		{"no cursor", 1, 3, Cursor{}, seqRange(1, 3), 0, false},
		{"seq 0 with first seq 1: everything, nothing missed", 1, 3, seq(0), seqRange(1, 3), 0, false},
		{"seq inside", 1, 3, seq(1), seqRange(2, 3), 0, false},
		{"seq one before last", 1, 3, seq(2), []uint64{3}, 0, false},
		{"seq == last", 1, 3, seq(3), nil, 0, false},
		{"future seq", 1, 3, seq(4), seqRange(1, 3), 0, true},
		{"max seq", 1, 3, seq(^uint64(0)), seqRange(1, 3), 0, true},

		{"wrapped, no cursor", 1, 12, Cursor{}, seqRange(8, 12), 0, false},
		{"wrapped, seq 0", 1, 12, seq(0), seqRange(8, 12), 7, false},
		{"wrapped, seq evicted long ago", 1, 12, seq(3), seqRange(8, 12), 4, false},
		{"wrapped, seq just evicted", 1, 12, seq(6), seqRange(8, 12), 1, false},
		{"wrapped, seq right before the cache", 1, 12, seq(7), seqRange(8, 12), 0, false},
		{"wrapped, seq oldest cached", 1, 12, seq(8), seqRange(9, 12), 0, false},
		{"wrapped, seq middle", 1, 12, seq(10), seqRange(11, 12), 0, false},
		{"wrapped, seq == last", 1, 12, seq(12), nil, 0, false},
		{"wrapped, future seq", 1, 12, seq(13), seqRange(8, 12), 0, true},

		{"seq 0 when first seq 5", 5, 7, seq(0), seqRange(5, 7), 4, false},
		{"seq 4 when first seq 5", 5, 7, seq(4), seqRange(5, 7), 0, false},

		{"id oldest", 1, 12, id("id-8"), seqRange(9, 12), 0, false},
		{"id middle", 1, 12, id("id-10"), seqRange(11, 12), 0, false},
		{"id newest", 1, 12, id("id-12"), nil, 0, false},
		{"id evicted", 1, 12, id("id-7"), seqRange(8, 12), 0, true},
		{"id unknown", 1, 12, id("nope"), seqRange(8, 12), 0, true},
		{"id first of unwrapped", 1, 3, id("id-1"), seqRange(2, 3), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := filledBuffer(5, tt.first, tt.last)
			r := b.Since(tt.c, tt.last, "")
			want := tt.want
			if want == nil {
				want = []uint64{}
			}
			if got := seqsOf(r.Messages); !slices.Equal(got, want) || r.Missed != tt.missed || r.Reset != tt.reset {
				t.Errorf("Since(%+v) = %v missed %d reset %v; want %v missed %d reset %v",
					tt.c, got, r.Missed, r.Reset, want, tt.missed, tt.reset)
			}
		})
	}
}
