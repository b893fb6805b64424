package wall

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
)

// Errors a Broker's Publish returns. Nothing was stored.
var (
	// ErrUnavailable: the sequencer cannot be reached (Redis is down); the
	// client may retry.
	ErrUnavailable = errors.New("message store unavailable")
	// ErrBodyTooLarge: the body is over the broker's limit.
	ErrBodyTooLarge = errors.New("message body too large")
)

// Broker sequences new messages and delivers them to every instance's Hub.
// Whatever the implementation, messages reach subscribers through one path,
// Wall.Apply, in seq order.
type Broker interface {
	// Publish assigns the next seq of the wall to a new message (body
	// already cleaned) and returns the message once this instance has
	// applied it, so the caller can read its own write.
	Publish(ctx context.Context, wall, id, body string) (*Message, error)
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
// in a new epoch and answers older cursors with a reset. Call it before
// the hub is used.
func NewMemoryBroker(hub *Hub) *MemoryBroker {
	hub.mu.Lock()
	hub.epoch = NewEpoch()
	hub.mu.Unlock()
	return &MemoryBroker{hub: hub}
}

// Publish applies the message synchronously, so it is in the cache when
// Publish returns.
func (b *MemoryBroker) Publish(ctx context.Context, wall, id, body string) (*Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	html := RenderHTML(id, body) // outside the wall lock
	w := b.hub.Acquire(wall)
	defer b.hub.Release(w)
	return w.sequence(func(seq uint64, epoch string) *Message {
		return newMessageHTML(id, seq, epoch, body, html)
	}), nil
}

// Sync has nothing to do: one process is always up to date with itself.
func (b *MemoryBroker) Sync(context.Context, string, Cursor) error { return nil }

// Run waits for ctx; the memory broker has no background work.
func (b *MemoryBroker) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
