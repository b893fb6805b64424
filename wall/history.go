package wall

// A wall's history replaced from outside: a broker loading the wall from
// its store (Restore) or swapping a history that does not continue the
// wall's (Replace).

// Restore loads msgs (oldest first, consecutive seqs, of the given epoch)
// as the cache of a wall this instance held nothing of, or continues it:
// subscribers are sent the messages newer than what the wall had; pollers
// wake and see the new state through their cursors. For a history that
// does not continue the wall's, use Replace.
func (w *Wall) Restore(msgs []*Message, epoch string) {
	w.restore(msgs, epoch).trimIfOver()
}

func (w *Wall) restore(msgs []*Message, epoch string) *Hub {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.buf.Bytes()
	prev := w.last
	w.epoch = epoch
	w.buf.Reset()
	for _, m := range msgs {
		w.buf.Push(m)
		w.last = m.Seq
		if m.Seq > prev {
			for s := range w.subs {
				s.Send(m)
			}
		}
	}
	w.notifyLocked()
	return w.chargeLocked(before)
}

// Replace swaps the cache for msgs (oldest first, consecutive seqs, of the
// given epoch), a history that does not continue the wall's: a new epoch
// after Redis lost the wall, or a gap wider than the history. Subscribers
// get Reset with the new cache; pollers whose cursor is of another epoch,
// or whose plain seq is past the new last, get the whole cache with Reset.
func (w *Wall) Replace(msgs []*Message, epoch string) {
	w.replace(msgs, epoch).trimIfOver()
}

func (w *Wall) replace(msgs []*Message, epoch string) *Hub {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.buf.Bytes()
	w.buf.Reset()
	w.last = 0
	w.epoch = epoch
	for _, m := range msgs {
		w.buf.Push(m)
		w.last = m.Seq
	}
	if len(w.subs) > 0 {
		snapshot := w.buf.Slice(0)
		for s := range w.subs {
			s.Reset(snapshot)
		}
	}
	w.notifyLocked()
	return w.chargeLocked(before)
}
