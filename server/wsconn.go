package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"wall/server/internal/outbound"
	"wall/server/internal/wsframe"
	"wall/wall"
)

// The WebSocket transport is an encoder (below) and a reader (wsConn) on
// top of an outbound.Session, which does the queueing and the writing.
// After gorilla's Upgrader has done the handshake, frames are read with
// wsframe rather than by gorilla's Conn: a connection then holds no read
// buffer and no reader state while it is idle (the buffer comes from a
// pool only while a frame is arriving), which is most of what an idle
// subscriber costs. Writes need no codec on the hot path: every message's
// frame was encoded once when it entered (wall.Message.Frame).

// wsTransport names the transport in counts and metrics.
const wsTransport = "websocket"

// wsEncoder puts the outbound session's frames on a WebSocket.
// heartbeat adds a text frame to every ping.
type wsEncoder struct{ heartbeat bool }

var (
	wsPing       = wsframe.Control(wsframe.OpPing, nil)
	wsHeartbeat  = append(wsframe.Control(wsframe.OpPing, nil), wsframe.Text([]byte(`{"heartbeat": true}`))...)
	wsCloseSlow  = wsframe.CloseFrame(wsframe.ClosePolicyViolation, closeSlowReason)
	wsCloseFlood = wsframe.CloseFrame(wsframe.ClosePolicyViolation, "too many frames unanswered: read what you are sent")
	wsCloseError = wsframe.CloseFrame(wsframe.CloseInternalError, "internal error")
	// An expired token: the error frame a refused post would get, then
	// 1008, so that a client reading either knows to get a new token.
	wsCloseExpired = append(errorFrame(msgTokenExpired, "", http.StatusUnauthorized),
		wsframe.CloseFrame(wsframe.ClosePolicyViolation, msgTokenExpired)...)
)

// msgTokenExpired is what a client whose token expired is told, as a
// request presenting it would be (identity.ErrExpired).
const msgTokenExpired = "token expired"

// AppendMessage appends m's pre-encoded frame, shared by every reader.
func (wsEncoder) AppendMessage(bufs net.Buffers, m *wall.Message) net.Buffers {
	return append(bufs, m.Frame)
}

// Note encodes a notice or an error as a text frame.
func (wsEncoder) Note(obj []byte) []byte { return wsframe.Text(obj) }

// Ping is an empty ping, which the peer's pong answers to extend its read
// deadline, and the heartbeat frame if the client asked for it.
func (e wsEncoder) Ping() []byte {
	if e.heartbeat {
		return wsHeartbeat
	}
	return wsPing
}

// Close is the close frame for the reasons the session cuts a peer off
// by itself; the reader sends its own (wsConn.readPump).
func (wsEncoder) Close(r outbound.Reason) []byte {
	switch r {
	case outbound.SlowReader:
		return wsCloseSlow
	case outbound.ControlFlood:
		return wsCloseFlood
	case outbound.Shutdown:
		return wsRestartFrame(reconnectHint())
	case outbound.InternalError:
		return wsCloseError
	case outbound.TokenExpired:
		return wsCloseExpired
	}
	return nil
}

// closeServiceRestart is the close code of a connection the server ends
// as it leaves (RFC 6455 section 7.4.1, IANA registry: "Service Restart"):
// the client should reconnect, after the hint.
const closeServiceRestart = 1012

// wsRestartFrame is the close frame of a connection ended by a drain or a
// shutdown: code 1012 and, as the reason, the JSON object
// {"reconnect_ms": N}, how long the client should wait before it
// reconnects (jittered per connection, so clients told at the same moment
// come back at different ones). Clients that do not read the reason
// reconnect on 1012 as on any close.
func wsRestartFrame(hint time.Duration) []byte {
	return wsframe.CloseFrame(closeServiceRestart, `{"reconnect_ms": `+strconv.FormatInt(hint.Milliseconds(), 10)+`}`)
}

// wsOptions are the outbound options of the WebSocket sessions of s, with
// or without heartbeat frames.
func (s *Server) wsOptions(heartbeat bool) *outbound.Options {
	return &outbound.Options{
		Transport:  wsTransport,
		Encoder:    wsEncoder{heartbeat: heartbeat},
		Flusher:    s.flusher,
		MaxQueue:   sendQueueMax,
		MaxNotes:   notesMax,
		WriteWait:  writeWait,
		CloseGrace: closeGrace,
		CloseReply: true,
		Ended:      &s.wsEnded,
		Lag:        s.metrics.lagOf(wsTransport),
		Log:        s.log,
	}
}

// wsConn is one WebSocket connection subscribed to one wall: its session
// and the state of its reader.
type wsConn struct {
	stream
	user    string     // the token's subject, the author of this socket's posts
	mayPost bool       // admission's verdict for frame posts
	client  netip.Addr // admission's client, whose post rate frame posts count against
}

// readPump reads the client's frames until the connection ends, then
// cleans up. It is the connection's reader goroutine, started by
// handleWS; a panic under it ends only this connection.
//
// While the peer is silent this goroutine is parked in WaitReadable,
// so its stack is what an idle connection's stack costs. It never reads
// itself: a read goes deeper than a goroutine's first 2 KiB (frame
// parsing, the read deadline's timer, the syscall), and the GC would not
// shrink the grown stack back while the goroutine waits, so every
// connection that ever answered a ping would keep twice the stack. The
// read runs on a goroutine of its own (readOff), which readPump waits
// for and which ends with it.
func (c *wsConn) readPump() {
	reason := outbound.PeerClosed
	defer func() { c.finish(reason) }()
	defer c.sess.CatchPanic("readPump")
	reason = c.serve()
}

// serve waits for data without holding a buffer and reads what arrives,
// until the connection ends, and says why it ended. The pong deadline
// ends a peer that stopped answering pings.
func (c *wsConn) serve() outbound.Reason {
	mr := wsframe.MessageReader{Limit: int64(c.s.cfg.BodyLimit)*6 + frameOverhead}
	c.sess.Conn().SetReadDeadline(time.Now().Add(c.s.pongWait()))
	for {
		if err := c.sess.Socket().WaitReadable(); err != nil {
			return readReason(err)
		}
		if err := c.readOff(&mr); err != nil {
			return c.readFailed(err)
		}
	}
}

// readOff runs readNow on a goroutine of its own and waits for it (see
// readPump). The MessageReader goes there and back by value, so it stays
// on readPump's stack. A panic there is reported as readPump's would be,
// and ends the connection.
func (c *wsConn) readOff(mr *wsframe.MessageReader) error {
	type result struct {
		mr  wsframe.MessageReader
		err error
	}
	done := make(chan result, 1)
	go func(m wsframe.MessageReader) {
		err := errReadPanicked
		defer func() { done <- result{m, err} }()
		defer c.sess.CatchPanic("readPump")
		err = c.readNow(&m)
	}(*mr)
	r := <-done
	*mr = r.mr
	return r.err
}

// errReadPanicked ends the reader after a panic in readOff's goroutine.
var errReadPanicked = errors.New("reading the connection panicked")

// readNow reads what has arrived with a pooled buffer, which it gives back
// before readPump waits again.
func (c *wsConn) readNow(mr *wsframe.MessageReader) error {
	br := c.s.frameReaders.Get().(*bufio.Reader)
	br.Reset(c.sess.Conn())
	err := c.readBuffered(br, mr)
	br.Reset(nil)
	c.s.frameReaders.Put(br)
	return err
}

// readFailed answers a protocol violation with its close frame and says
// why the read ended the connection.
func (c *wsConn) readFailed(err error) outbound.Reason {
	var ce *wsframe.CloseError
	if errors.As(err, &ce) {
		c.sess.CloseWith(outbound.ProtocolError, wsframe.CloseFrame(ce.Code, ce.Reason))
	}
	return readReason(err)
}

// readReason says why a read ended the connection.
func readReason(err error) outbound.Reason {
	var ce *wsframe.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		return outbound.ProtocolError
	case errors.Is(err, errPeerClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed):
		return outbound.PeerClosed
	case errors.Is(err, errCutOff):
		return outbound.ControlFlood // or whatever the session was cut off for first
	case errors.As(err, &ne) && ne.Timeout():
		return outbound.PongTimeout
	}
	return outbound.ReadError
}

// readBuffered handles messages until br holds no more bytes (and none of
// a partial message), so that nothing is left buffered when readPump goes
// back to waiting on the socket.
func (c *wsConn) readBuffered(br *bufio.Reader, mr *wsframe.MessageReader) error {
	for {
		msg, err := mr.Next(br, c.control)
		if err == wsframe.ErrNoMessage {
			return nil // only control frames were buffered
		}
		if err != nil {
			return err
		}
		c.sess.Conn().SetReadDeadline(time.Now().Add(c.s.pongWait()))
		if f := c.post(msg); f != nil && !c.sess.Note(f) {
			return errCutOff
		}
		if br.Buffered() == 0 && !mr.Partial() {
			return nil
		}
	}
}

// errCutOff ends the reader of a session that was cut off (too many
// frames queued for a peer that does not read them).
var errCutOff = errors.New("connection cut off")

// errPeerClosed is returned after the peer's close frame.
var errPeerClosed = errors.New("peer closed the connection")

// control answers a control frame; readPump's MessageReader calls it.
func (c *wsConn) control(op byte, payload []byte) error {
	c.sess.Conn().SetReadDeadline(time.Now().Add(c.s.pongWait()))
	switch op {
	case wsframe.OpPing:
		if !c.sess.Note(wsframe.Control(wsframe.OpPong, payload)) {
			return errCutOff
		}
	case wsframe.OpClose:
		code, reason, err := wsframe.ParseClose(payload)
		if err != nil {
			return err // answered with its own code: 1002, or 1007
		}
		// Echo the close (RFC 6455 section 5.5.1) and end.
		if code == wsframe.CloseNoStatus {
			code = wsframe.CloseNormal
		}
		c.s.log.Debug("websocket closed by peer", "wall", c.wall.Name(), "code", code, "reason", reason)
		c.sess.CloseWith(outbound.PeerClosed, wsframe.CloseFrame(code, ""))
		return errPeerClosed
	}
	return nil
}

// newFrameReader makes the readers of Server.frameReaders. 1 KiB takes a
// typical post in one read.
func newFrameReader() any { return bufio.NewReaderSize(nil, 1024) }
