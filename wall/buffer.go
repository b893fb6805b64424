package wall

// Buffer is the bounded cache of one wall: the newest messages in seq order,
// kept in a ring that grows lazily up to its capacity, so a wall with three
// messages does not pay for two hundred slots.
//
// Buffer is not safe for concurrent use; the owning Wall holds the lock.
type Buffer struct {
	ring []*Message
	size int // capacity
	head int // index of the oldest message once the ring is full
}

// NewBuffer returns an empty buffer that keeps at most size messages.
func NewBuffer(size int) Buffer {
	if size < 1 {
		size = 1
	}
	return Buffer{size: size}
}

// Len returns the number of cached messages.
func (b *Buffer) Len() int { return len(b.ring) }

// At returns the i-th cached message, oldest first.
func (b *Buffer) At(i int) *Message {
	return b.ring[(b.head+i)%len(b.ring)]
}

// Push appends m, evicting the oldest message when the buffer is full.
func (b *Buffer) Push(m *Message) {
	if len(b.ring) < b.size {
		b.ring = append(b.ring, m)
		return
	}
	b.ring[b.head] = m
	b.head = (b.head + 1) % len(b.ring)
}

// Reset empties the buffer.
func (b *Buffer) Reset() {
	clear(b.ring)
	b.ring = b.ring[:0]
	b.head = 0
}

// Slice returns the messages from index i (oldest first) to the newest, as a
// new slice that the caller may keep after the lock is released.
func (b *Buffer) Slice(i int) []*Message {
	n := len(b.ring) - i
	if n <= 0 {
		return nil
	}
	out := make([]*Message, n)
	for k := range out {
		out[k] = b.At(i + k)
	}
	return out
}

// indexOfID returns the index of the message with the given id, searching
// newest first as Tornado does, or -1.
func (b *Buffer) indexOfID(id string) int {
	for i := len(b.ring) - 1; i >= 0; i-- {
		if b.At(i).ID == id {
			return i
		}
	}
	return -1
}

// Since answers "messages after cursor" with the cache rules of PROTOCOL.md:
//
//   - no cursor: the whole cache;
//   - a seq cursor inside the cache: the messages after it;
//   - a seq cursor older than the cache: the whole cache, and Missed counts
//     the evicted messages in between;
//   - an id cursor in the cache: the messages after it;
//   - an unknown id, a seq cursor of another epoch, or a seq newer than the
//     newest message (a plain seq from another epoch): the whole cache with
//     Reset set, because what was missed is unknown.
//
// last is the seq of the newest message the wall has applied and epoch the
// numbering it belongs to. A plain seq (no epoch) is taken in it.
func (b *Buffer) Since(c Cursor, last uint64, epoch string) Result {
	switch {
	case !c.Set:
		return Result{Messages: b.Slice(0)}
	case c.ID != "":
		if i := b.indexOfID(c.ID); i >= 0 {
			return Result{Messages: b.Slice(i + 1)}
		}
		return Result{Messages: b.Slice(0), Reset: true}
	case c.Epoch != "" && c.Epoch != epoch, c.Seq > last:
		return Result{Messages: b.Slice(0), Reset: true}
	case b.Len() == 0:
		return Result{}
	}
	first := b.At(0).Seq
	if c.Seq+1 >= first {
		return Result{Messages: b.Slice(int(c.Seq + 1 - first))}
	}
	return Result{Messages: b.Slice(0), Missed: first - 1 - c.Seq}
}
