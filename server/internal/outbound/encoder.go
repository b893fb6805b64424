package outbound

import (
	"net"

	"wall/wall"
)

// Encoder puts one transport's frames on the wire. A session calls it with
// its lock held, for every flush: it must be cheap and must not block.
type Encoder interface {
	// AppendMessage appends m's wire form to bufs. It must not allocate
	// per call: the bytes are encoded once per message and shared by every
	// session (WebSocket: m.Frame), and several slices may be appended
	// (an event's prefix, m.JSON, its terminator).
	AppendMessage(bufs net.Buffers, m *wall.Message) net.Buffers
	// Note encodes a frame that is not a message from its JSON object: a
	// gap or reset notice, an error.
	Note(obj []byte) []byte
	// Ping returns the keepalive frame (a WebSocket ping, an SSE comment).
	// The same bytes may be returned every time.
	Ping() []byte
	// Close returns the last frame to send when the session is cut off for
	// r, or nil to just close the connection.
	Close(r Reason) []byte
}

// Observer receives measurements: a prometheus.Observer (a histogram)
// satisfies it, without this package importing the client library.
type Observer interface{ Observe(v float64) }
