package wall

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// Errors a Broker's Publish returns. Nothing was stored.
var (
	// ErrUnavailable: the sequencer cannot be reached (Redis is down); the
	// client may retry.
	ErrUnavailable = errors.New("message store unavailable")
	// ErrBodyTooLarge: the body is over the broker's limit.
	ErrBodyTooLarge = errors.New("message body too large")
)

// Post is a new message for a Broker to sequence.
type Post struct {
	Wall string // a valid wall name
	// ID is the message id, a lowercase UUID4: chosen by the client (a
	// retry sends the same one) or by the server. A post whose ID is still
	// in the wall's history is not stored again.
	ID   string
	Body string // already cleaned
	User string // the author's token subject; empty for anonymous posts
}

// Broker sequences new messages and delivers them to every instance's Hub.
// Whatever the implementation, messages reach subscribers through one path,
// Wall.Apply, in seq order.
type Broker interface {
	// Publish assigns the next seq of the wall to a new message and
	// returns the message once this instance has applied it, so the
	// caller can read its own write. If a message with p.ID is still in
	// the wall's history, nothing is stored: that message is returned and
	// stored is false.
	Publish(ctx context.Context, p Post) (m *Message, stored bool, err error)
	// Sync makes sure this instance has applied everything the sequencer
	// knows up to cursor c, waiting briefly if needed; a cursor minted by
	// another instance may be a few milliseconds ahead of this one.
	Sync(ctx context.Context, wall string, c Cursor) error
	// Run runs the broker's background work until ctx is done.
	Run(ctx context.Context) error
}

// NewEpoch returns a new random epoch: 16 lowercase hex characters, like
// those the Redis sequencer makes.
func NewEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// MemoryBroker is the in-process broker: each wall is its own sequencer.
// It is the default when no Redis is configured.
type MemoryBroker struct {
	hub *Hub
}

var _ Broker = (*MemoryBroker)(nil)

// NewMemoryBroker returns a broker that delivers into hub. It gives hub
// one new epoch, which every wall the hub creates from then on takes: the
// process's history is lost when it stops, so a restarted server numbers
// in a new epoch and answers older cursors with a reset. A wall the hub
// evicts with messages loses its history the same way, and is created
// again in an epoch of its own (Hub.epochFor). Call it before the hub is
// used.
func NewMemoryBroker(hub *Hub) *MemoryBroker {
	hub.mu.Lock()
	hub.setEpoch(NewEpoch())
	hub.mu.Unlock()
	return &MemoryBroker{hub: hub}
}

// Publish applies the message synchronously, so it is in the cache when
// Publish returns.
func (b *MemoryBroker) Publish(ctx context.Context, p Post) (*Message, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	html := RenderHTML(p.ID, p.Body) // outside the wall lock
	w := b.hub.Acquire(p.Wall)
	defer b.hub.Release(w)
	m, stored := w.sequence(p.ID, func(seq uint64, epoch string) *Message {
		return encode(&Message{ID: p.ID, Seq: seq, Epoch: epoch, User: p.User,
			Time: time.Now().UnixMilli(), Body: p.Body, HTML: html})
	})
	return m, stored, nil
}

// Sync has nothing to do: one process is always up to date with itself.
func (b *MemoryBroker) Sync(context.Context, string, Cursor) error { return nil }

// Run waits for ctx; the memory broker has no background work.
func (b *MemoryBroker) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
