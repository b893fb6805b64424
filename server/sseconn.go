package server

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"time"

	"wall/server/internal/outbound"
	"wall/wall"
)

// The event-stream transport is an encoder (below) and a reader (sseConn)
// on top of an outbound.Session, as WebSocket is. An event is
//
//	id: <cursor>\ndata: <message JSON>\n\n
//
// written as five shared slices: the constant parts, the cursor as it
// stands inside the message's own JSON, and the JSON itself, the very
// bytes of its WebSocket frame's payload. Message JSON never holds a raw
// newline (it is escaped like Python's json.dumps), so one data: line
// carries it. Nothing is encoded per subscriber.

// The retry: delay sent at shutdown is drawn from [min, max).
const (
	sseShutdownRetryMin = 500 * time.Millisecond
	sseShutdownRetryMax = 3 * time.Second
)

var (
	sseIDField   = []byte("id: ")
	sseDataField = []byte("\ndata: ")
	sseEventEnd  = []byte("\n\n")
	// A comment line: invisible to EventSource, but traffic for proxies
	// whose read timeout would otherwise end an idle stream.
	ssePing      = []byte(": ping\n\n")
	sseHeartbeat = []byte("event: heartbeat\ndata: {}\n\n")
	sseCloseSlow = []byte(": " + closeSlowReason + "\n\n")
	sseCloseErr  = []byte(": internal error\n\n")
	// An expired token: the comment, and an event with no id carrying
	// the error a request with that token gets, which a client reading
	// events (EventSource cannot see the 401 of its reconnection) acts on.
	sseCloseExpired = []byte(": " + msgTokenExpired + "\ndata: {\"error\": \"" + msgTokenExpired + "\", \"status\": 401}\n\n")
)

// sseEncoder puts the outbound session's frames on an event stream.
type sseEncoder struct {
	ping []byte // ssePing, or sseHeartbeat for heartbeat=1
}

// AppendMessage appends m as one event, sharing m's bytes.
func (sseEncoder) AppendMessage(bufs net.Buffers, m *wall.Message) net.Buffers {
	return append(bufs, sseIDField, eventID(m), sseDataField, m.JSON, sseEventEnd)
}

// Note encodes a notice ({"missed": N}, {"reset": true}) as an event with
// no id: the client's resume position stays that of its last message.
func (sseEncoder) Note(obj []byte) []byte {
	b := make([]byte, 0, len("data: ")+len(obj)+len(sseEventEnd))
	b = append(b, "data: "...)
	b = append(b, obj...)
	return append(b, sseEventEnd...)
}

// Ping is the keepalive: a comment, or a heartbeat event.
func (e sseEncoder) Ping() []byte { return e.ping }

// Close is the last thing a stream is sent when the server ends it: a
// comment saying why (curl shows it, EventSource ignores it), for an
// expired token an error event as well, and, at
// shutdown, a retry: delay spread over a few seconds, so that the
// clients of an instance going away do not all reconnect to the others
// at once. EventSource reconnects by itself with its Last-Event-ID.
func (sseEncoder) Close(r outbound.Reason) []byte {
	switch r {
	case outbound.SlowReader:
		return sseCloseSlow
	case outbound.Shutdown:
		return []byte(": server shutting down\nretry: " + strconv.FormatInt(reconnectHint().Milliseconds(), 10) + "\n\n")
	case outbound.InternalError:
		return sseCloseErr
	case outbound.TokenExpired:
		return sseCloseExpired
	}
	return nil
}

// cursorKey precedes the cursor in message JSON, whose keys come in a
// fixed order with "cursor" third ({"id", "seq", "cursor", ...}).
var cursorKey = []byte(`"cursor": "`)

// eventID returns m's cursor, "<seq>.<epoch>", as the bytes of m.JSON
// that spell it, so that an event's id: line is shared by every stream
// like the rest of the event. A message without an epoch (or whose
// epoch JSON had to escape) gets its cursor formatted anew.
func eventID(m *wall.Message) []byte {
	if i := bytes.Index(m.JSON, cursorKey); i >= 0 {
		v := m.JSON[i+len(cursorKey):]
		if j := bytes.IndexByte(v, '"'); j >= 0 && isCursorOf(v[:j], m) {
			return v[:j:j]
		}
	}
	return []byte(m.Cursor().String())
}

// isCursorOf reports whether b is "<m.Seq>.<m.Epoch>".
func isCursorOf(b []byte, m *wall.Message) bool {
	var digits [20]byte
	seq := strconv.AppendUint(digits[:0], m.Seq, 10)
	return m.Epoch != "" && len(b) == len(seq)+1+len(m.Epoch) && bytes.HasPrefix(b, seq) &&
		b[len(seq)] == '.' && string(b[len(seq)+1:]) == m.Epoch
}

// sseShared is what every event stream of a server shares.
type sseShared struct {
	plain, beat *outbound.Options // without and with heartbeat=1
	ended       outbound.Counters // streams ended, per reason
}

// init builds the options of s's streams; server.New calls it.
func (x *sseShared) init(s *Server) {
	o := outbound.Options{
		Transport:  sseTransport,
		Encoder:    sseEncoder{ping: ssePing},
		Flusher:    s.flusher,
		MaxQueue:   sendQueueMax,
		MaxNotes:   notesMax,
		WriteWait:  writeWait,
		CloseGrace: closeGrace,
		CloseReply: false, // a stream's client answers nothing: close after the last bytes
		Ended:      &x.ended,
		Lag:        s.metrics.lagOf(sseTransport),
		Log:        s.log,
	}
	beat := o
	beat.Encoder = sseEncoder{ping: sseHeartbeat}
	x.plain, x.beat = &o, &beat
}

// options returns the options for a stream with or without heartbeats.
func (x *sseShared) options(heartbeat bool) *outbound.Options {
	if heartbeat {
		return x.beat
	}
	return x.plain
}

// sseConn is one event stream subscribed to one wall: its session and
// the state of its reader.
type sseConn struct {
	stream
	inbound int // bytes the client sent after its request
}

// errTalkative ends a stream whose client keeps sending: it has nothing
// to say after its request.
var errTalkative = errors.New("event-stream client sent too much")

// readPump watches the connection until it ends, then cleans up: it is
// how a client that hangs up is noticed. It is the stream's reader
// goroutine, started by handleSSE, parked in WaitReadable without a
// buffer; a panic under it ends only this stream.
func (c *sseConn) readPump() {
	reason := outbound.PeerClosed
	defer func() { c.finish(reason) }()
	defer c.sess.CatchPanic("sse readPump")
	reason = c.serve()
}

// serve waits for the connection to end (EOF, a reset, or the session
// closing it) and says why it ended. No read deadline: a stream's client
// is silent; a dead one is found by the writes (WriteWait, or TCP).
func (c *sseConn) serve() outbound.Reason {
	for {
		if err := c.sess.Socket().WaitReadable(); err != nil {
			return readReason(err)
		}
		if err := c.discard(); err != nil {
			if errors.Is(err, errTalkative) {
				return outbound.ProtocolError
			}
			return readReason(err)
		}
	}
}

// discard reads and drops what the client sent, up to sseMaxInbound
// bytes in all (a pipelined request, say; it is never answered).
func (c *sseConn) discard() error {
	var buf [512]byte
	n, err := c.sess.Conn().Read(buf[:])
	c.inbound += n
	if err == nil && c.inbound > sseMaxInbound {
		err = errTalkative
	}
	return err
}
