package wall

// Buffer is the bounded cache of one wall: the newest messages in seq order,
// kept in a ring that grows lazily up to its capacity, so a wall with three
// messages does not pay for two hundred slots. It counts the bytes its
// messages hold (MessageBytes), which the hub's memory budget adds up.
//
// Buffer is not safe for concurrent use; the owning Wall holds the lock.
type Buffer struct {
	ring  []*Message // len(ring) slots allocated, n of them used
	size  int        // capacity
	head  int        // index of the oldest message
	n     int        // messages held
	bytes int64      // MessageBytes of the messages held
}

// NewBuffer returns an empty buffer that keeps at most size messages.
func NewBuffer(size int) Buffer {
	if size < 1 {
		size = 1
	}
	return Buffer{size: size}
}

// Len returns the number of cached messages.
func (b *Buffer) Len() int { return b.n }

// Bytes returns the memory the cached messages hold (see MessageBytes).
func (b *Buffer) Bytes() int64 { return b.bytes }

// At returns the i-th cached message, oldest first.
func (b *Buffer) At(i int) *Message {
	return b.ring[(b.head+i)%len(b.ring)]
}

// Push appends m, evicting the oldest message when the buffer is full.
func (b *Buffer) Push(m *Message) {
	if b.n == len(b.ring) {
		if b.n == b.size { // full: m takes the oldest one's slot
			b.bytes -= MessageBytes(b.ring[b.head])
			b.ring[b.head] = m
			b.head = (b.head + 1) % len(b.ring)
			b.bytes += MessageBytes(m)
			return
		}
		b.grow()
	}
	b.ring[(b.head+b.n)%len(b.ring)] = m
	b.n++
	b.bytes += MessageBytes(m)
}

// grow doubles the ring (at least 4 slots, at most size), oldest first.
func (b *Buffer) grow() {
	n := min(b.size, max(4, 2*len(b.ring)))
	ring := make([]*Message, n)
	for i := range b.n {
		ring[i] = b.At(i)
	}
	b.ring, b.head = ring, 0
}

// DropOldest drops the oldest messages until the buffer holds at most
// limit bytes, but always keeps the newest message: a wall's cursor rules
// need the seq of its first cached message (a cursor older than it is
// answered with Missed). It returns the bytes freed.
func (b *Buffer) DropOldest(limit int64) int64 {
	before := b.bytes
	for b.n > 1 && b.bytes > limit {
		b.bytes -= MessageBytes(b.ring[b.head])
		b.ring[b.head] = nil
		b.head = (b.head + 1) % len(b.ring)
		b.n--
	}
	return before - b.bytes
}

// Reset empties the buffer.
func (b *Buffer) Reset() {
	clear(b.ring)
	b.head, b.n, b.bytes = 0, 0, 0
}

// Slice returns the messages from index i (oldest first) to the newest, as a
// new slice that the caller may keep after the lock is released.
func (b *Buffer) Slice(i int) []*Message {
	n := b.n - i
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
	for i := b.n - 1; i >= 0; i-- {
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
