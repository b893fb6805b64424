package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"wall/server/internal/netpoll"
	"wall/server/internal/wsframe"
	"wall/wall"
)

// wsClient is one WebSocket connection subscribed to one wall.
//
// Its goroutines: readPump, from the upgrade to the end of the connection,
// parked on a shallow stack while the peer is silent; and at most one
// writeLoop, started by kick when there is something to write and ended
// when there is nothing left. Everything under mu is shared between them,
// the wall's delivery (Send) and the server's keepalive loop.
type wsClient struct {
	s    *Server
	conn net.Conn
	sock netpoll.Socket // conn's descriptor, to wait for data without a buffer
	wall *wall.Wall

	mu       sync.Mutex
	queue    []*wall.Message // live messages not yet written
	maxQueue int             // queue length that marks the reader slow
	notes    [][]byte        // frames that are not messages: errors, gap notices, pongs
	ping     bool            // a ping is due
	closing  []byte          // a close frame to send, then close: slow reader or shutdown
	writing  bool            // a writer runs, the connection is closing, or it is not attached yet
	reset    bool            // Reset was called (see attach)
	done     bool            // readPump has ended: start no writer

	writer   sync.WaitGroup // the running writeLoop, if any
	readDone chan struct{}  // closed when readPump has ended
}

// newWSClient returns a client of w whose writes are held (writing is set)
// until attach gives it its connection.
func newWSClient(s *Server, w *wall.Wall) *wsClient {
	return &wsClient{s: s, wall: w, readDone: make(chan struct{}), writing: true, maxQueue: sendQueueMax}
}

// attach gives the client its upgraded connection and releases its writes:
// first a gap notice if the cursor fell out of the cache, then the
// catch-up computed by Wall.Subscribe, then whatever arrived since.
func (cl *wsClient) attach(conn net.Conn, backlog wall.Result) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.conn = conn
	cl.sock = netpoll.NewSocket(conn)
	if !cl.reset { // a Reset while held replaced the backlog already
		if backlog.Missed > 0 || backlog.Reset {
			b, _ := json.Marshal(struct {
				Missed uint64 `json:"missed,omitempty"`
				Reset  bool   `json:"reset,omitempty"`
			}{backlog.Missed, backlog.Reset})
			cl.notes = append([][]byte{wall.TextFrame(b)}, cl.notes...)
		}
		cl.queue = append(backlog.Messages, cl.queue...)
		cl.maxQueue += len(backlog.Messages)
	}
	cl.writing = false
	cl.kickLocked()
}

// Send queues m for the writer. It runs under the wall's lock, so it only
// appends: a reader that falls maxQueue messages behind is cut off rather
// than waited on (it resumes from its cursor).
func (cl *wsClient) Send(m *wall.Message) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch {
	case cl.closing != nil || cl.done:
		return
	case len(cl.queue) >= cl.maxQueue:
		cl.queue = nil
		cl.closing = wsframe.CloseFrame(websocket.ClosePolicyViolation, closeSlowReason)
		cl.s.clients.countSlow()
		// A writeLoop blocked on the stalled peer would hold the connection
		// until writeWait: fail its write now. Deadlines may be set from
		// any goroutine.
		if cl.conn != nil {
			cl.conn.SetWriteDeadline(time.Now())
		}
	default:
		cl.queue = append(cl.queue, m)
	}
	cl.kickLocked()
}

// Reset replaces what is pending with a reset notice and the wall's new
// cache: the wall's history was replaced (see wall.Wall.Replace), and the
// client starts over from it. It runs under the wall's lock.
func (cl *wsClient) Reset(msgs []*wall.Message) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closing != nil || cl.done {
		return
	}
	cl.notes = append(cl.notes, resetFrame)
	cl.queue = append(cl.queue[:0], msgs...)
	cl.maxQueue = len(msgs) + sendQueueMax
	cl.reset = true
	cl.kickLocked()
}

var resetFrame = wall.TextFrame([]byte(`{"reset": true}`))

// note queues a frame that is not a message; called by readPump.
func (cl *wsClient) note(frame []byte) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.notes = append(cl.notes, frame)
	cl.kickLocked()
}

// noteError queues an {"error": msg} frame.
func (cl *wsClient) noteError(msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	cl.note(wall.TextFrame(b))
}

// keepalive asks for a ping; called by the server's keepalive loop.
func (cl *wsClient) keepalive() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.ping = true
	cl.kickLocked()
}

// close asks the writer to send a close frame and end the connection.
func (cl *wsClient) close(code int, reason string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closing == nil {
		cl.closing = wsframe.CloseFrame(code, reason)
	}
	cl.kickLocked()
}

// kickLocked schedules a flush unless one is scheduled or running: a
// flusher worker writes without blocking, and only a connection whose
// socket is full gets a writeLoop goroutine of its own. cl.mu must be held.
func (cl *wsClient) kickLocked() {
	if cl.writing || cl.done {
		return
	}
	cl.writing = true
	cl.writer.Add(1)
	if !cl.s.flusher.Submit(cl) {
		go cl.writeLoop(nil, nil)
	}
}

var pingFrame = wsframe.Control(wsframe.OpPing, nil)

// takeLocked moves everything pending into bufs, in wire order, and
// returns the close frame if one is due. With nothing pending it clears
// writing and returns ok false: the writer's turn is over. cl.mu must be
// held.
func (cl *wsClient) takeLocked(bufs net.Buffers) (_ net.Buffers, closing []byte, ok bool) {
	q, notes, ping := cl.queue, cl.notes, cl.ping
	cl.notes, cl.ping = nil, false
	// The queue's array is reused once its frames are in bufs (below), so
	// a delivery allocates nothing; a queue that grew large is let go.
	cl.queue = nil
	defer func() {
		if cap(q) <= 64 && !cl.done {
			clear(q)
			cl.queue = q[:0]
		}
	}()
	if cl.done {
		// The reader has ended: only a pending close frame still goes.
		q, notes, ping = nil, nil, false
	}
	closing = cl.closing
	if len(q) == 0 && len(notes) == 0 && !ping && closing == nil {
		if !cl.done {
			cl.writing = false
		}
		return bufs, nil, false
	}
	// Message frames were encoded once, when their messages entered, and
	// are shared by every reader.
	bufs = append(bufs, notes...)
	for _, m := range q {
		bufs = append(bufs, m.Frame)
	}
	if ping {
		bufs = append(bufs, pingFrame)
	}
	if closing != nil {
		bufs = append(bufs, closing)
	}
	return bufs, closing, true
}

// flush writes what is pending without blocking; only a flusher worker
// calls it, after kickLocked. When the socket cannot take everything, the
// rest goes to a writeLoop goroutine, so a slow reader never holds a
// worker.
func (cl *wsClient) Flush(scratch *net.Buffers, w *netpoll.Writer) {
	for {
		cl.mu.Lock()
		bufs, closing, ok := cl.takeLocked((*scratch)[:0])
		cl.mu.Unlock()
		*scratch = bufs
		if !ok {
			cl.writer.Done()
			return
		}
		n, err := w.Write(cl.sock, bufs)
		var rest net.Buffers
		if err == nil {
			rest = unwritten(bufs, n) // a copy: bufs is the worker's scratch
		}
		clear(bufs) // drop the scratch's references to message frames
		if err != nil {
			cl.conn.Close() // ends readPump; writing stays set
			cl.writer.Done()
			return
		}
		if len(rest) > 0 || closing != nil {
			go cl.writeLoop(rest, closing)
			return
		}
	}
}

// writeLoop writes with blocking writes under a deadline: first rest (what
// flush could not write), then whatever is pending, until nothing is. It
// ends the connection after a close frame. While it runs it is the only
// writer of the connection.
func (cl *wsClient) writeLoop(rest net.Buffers, closing []byte) {
	defer cl.writer.Done()
	bufs := rest
	for {
		if len(bufs) > 0 {
			wait := writeWait
			if closing != nil {
				wait = closeGrace // shutdown or a slow reader: don't linger
			}
			cl.conn.SetWriteDeadline(time.Now().Add(wait))
			if _, err := bufs.WriteTo(cl.conn); err != nil {
				cl.conn.Close() // ends readPump; writing stays set
				return
			}
		}
		if closing != nil {
			// Wait briefly for the peer's close reply, which ends readPump.
			t := time.NewTimer(closeGrace)
			select {
			case <-cl.readDone:
			case <-t.C:
			}
			t.Stop()
			cl.conn.Close()
			return
		}
		var ok bool
		cl.mu.Lock()
		bufs, closing, ok = cl.takeLocked(nil)
		cl.mu.Unlock()
		if !ok {
			return
		}
	}
}

// unwritten returns the part of bufs past the first n bytes, as a new
// slice that does not share bufs' backing array.
func unwritten(bufs net.Buffers, n int) net.Buffers {
	for i, b := range bufs {
		if n < len(b) {
			rest := make(net.Buffers, 0, len(bufs)-i)
			rest = append(rest, b[n:])
			return append(rest, bufs[i+1:]...)
		}
		n -= len(b)
	}
	return nil
}

// readPump reads the client's frames until the connection ends, then
// cleans up. While the peer is silent it waits for data without holding a
// buffer; the pong deadline ends a peer that stopped answering pings.
func (cl *wsClient) readPump() {
	defer cl.finish()
	mr := wsframe.MessageReader{Limit: int64(cl.s.cfg.BodyLimit)*6 + frameOverhead}
	cl.conn.SetReadDeadline(time.Now().Add(cl.s.pongWait()))
	for {
		if err := cl.sock.WaitReadable(); err != nil {
			return
		}
		br := cl.s.frameReaders.Get().(*bufio.Reader)
		br.Reset(cl.conn)
		err := cl.readBuffered(br, &mr)
		br.Reset(nil)
		cl.s.frameReaders.Put(br)
		if err != nil {
			var ce *wsframe.CloseError
			if errors.As(err, &ce) {
				cl.close(ce.Code, ce.Reason)
			}
			return
		}
	}
}

// readBuffered handles messages until br holds no more bytes (and none of
// a partial message), so that nothing is left buffered when readPump goes
// back to waiting on the socket.
func (cl *wsClient) readBuffered(br *bufio.Reader, mr *wsframe.MessageReader) error {
	for {
		msg, err := mr.Next(br, cl.control)
		if err == wsframe.ErrNoMessage {
			return nil // only control frames were buffered
		}
		if err != nil {
			return err
		}
		cl.conn.SetReadDeadline(time.Now().Add(cl.s.pongWait()))
		if e := cl.post(msg); e != "" {
			cl.noteError(e)
		}
		if br.Buffered() == 0 && !mr.Partial() {
			return nil
		}
	}
}

// control answers a control frame; readPump's messageReader calls it.
func (cl *wsClient) control(op byte, payload []byte) error {
	cl.conn.SetReadDeadline(time.Now().Add(cl.s.pongWait()))
	switch op {
	case wsframe.OpPing:
		cl.note(wsframe.Control(wsframe.OpPong, payload))
	case wsframe.OpClose:
		code, reason, err := wsframe.ParseClose(payload)
		if err != nil {
			return err // answered with its own code: 1002, or 1007
		}
		// Echo the close (RFC 6455 section 5.5.1) and end.
		if code == wsframe.CloseNoStatus {
			code = wsframe.CloseNormal
		}
		cl.s.log.Debug("websocket closed by peer", "wall", cl.wall.Name(), "code", code, "reason", reason)
		cl.close(code, "")
		return errPeerClosed
	}
	return nil
}

// errPeerClosed is returned after the peer's close frame.
var errPeerClosed = errors.New("peer closed the connection")

// finish runs when readPump ends: it stops delivery, stops the writer and
// waits for it, and releases the wall.
func (cl *wsClient) finish() {
	cl.wall.Unsubscribe(cl)
	cl.mu.Lock()
	cl.done = true
	cl.queue, cl.notes = nil, nil
	closing := cl.closing
	writing := cl.writing
	cl.mu.Unlock()
	close(cl.readDone)
	if closing == nil || !writing {
		cl.conn.Close() // a blocked writer fails at once
	}
	cl.writer.Wait()
	cl.conn.Close()
	cl.s.hub.Release(cl.wall)
	cl.s.clients.leave(cl)
}

// newFrameReader makes the readers of Server.frameReaders. 1 KiB takes a
// typical post in one read.
func newFrameReader() any { return bufio.NewReaderSize(nil, 1024) }
