package outbound

import (
	"encoding/json"
	"log/slog"
	"net"
	"sync"
	"time"

	"wall/server/internal/netpoll"
	"wall/wall"
)

// Options are what the sessions of one transport share. They must not
// change once a session uses them.
type Options struct {
	Transport  string           // name for counts and logs: "websocket"
	Encoder    Encoder          // the transport's wire format
	Flusher    *netpoll.Flusher // workers for non-blocking writes; nil: every flush on the session's writeLoop
	MaxQueue   int              // live messages queued behind a full socket before the reader is slow
	MaxNotes   int              // frames that are not messages queued before the peer is flooding
	WriteWait  time.Duration    // longest blocking write
	CloseGrace time.Duration    // longest write of a final frame, and longest wait for the reply to it
	CloseReply bool             // the peer answers a final frame (WebSocket's close): wait for the reader to end
	Ended      *Counters        // sessions ended, per reason; may be nil
	Lag        Observer         // delivery lag in seconds, sampled (see Session.Send); may be nil
	Log        *slog.Logger     // where panics are reported; nil for slog.Default
}

// Session is one streaming connection's outbound side: what one peer is
// sent and how. It is a wall.Subscriber, a netpoll.Job and a Registry
// Member.
//
// Its goroutines: the transport's reader, which starts after Attach and
// calls Finish when it ends; and at most one writeLoop, started when the
// socket is full (or there is no Flusher) and ended when nothing is left
// to write. Everything under mu is shared between them, the flusher
// workers, the wall's delivery (Send, Reset) and the Registry's keepalive
// loop.
type Session struct {
	o    *Options
	conn net.Conn       // set by Attach, then read-only
	sock netpoll.Socket // conn's descriptor, for non-blocking writes

	mu       sync.Mutex
	queue    []*wall.Message // live messages not yet written
	maxQueue int             // queue length that marks the reader slow
	notes    [][]byte        // frames that are not messages: notices, errors, pongs
	final    []byte          // the last frame, once closing
	live     *wall.Message   // the newest message Send queued since the last take, for Lag
	exp      *expiry         // when the peer's token expires (expiry.go); nil if it does not
	// The small fields together, so that a session stays in its size
	// class (an idle connection's memory).
	reason  Reason // why the session ended or is ending; Live until then
	writes  uint8  // writes carrying a live message, to sample Lag
	ping    bool   // a ping is due
	closing bool   // cut off: write final (if any), then close
	writing bool   // a writer runs, the connection is closing, or it is not attached yet
	reset   bool   // Reset was called (see Attach)
	done    bool   // the reader has ended: start no writer

	writer   sync.WaitGroup // the running writer (a worker's flush or writeLoop), if any
	readDone chan struct{}  // closed when the reader has ended
}

// New returns a session whose writes are held until Attach gives it its
// connection, so it can subscribe to a wall before the handshake is
// answered.
func New(o *Options) *Session {
	return &Session{o: o, readDone: make(chan struct{}), writing: true, maxQueue: o.MaxQueue}
}

// Attach gives the session its connection and releases its writes: first
// a gap notice if the cursor fell out of the cache, then the catch-up
// computed by wall.Wall.Subscribe, then whatever arrived since. After
// Attach the caller starts the connection's reader.
func (s *Session) Attach(conn net.Conn, backlog wall.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = conn
	s.sock = netpoll.NewSocket(conn)
	if !s.reset { // a Reset while held replaced the backlog already
		if backlog.Missed > 0 || backlog.Reset {
			b, _ := json.Marshal(struct {
				Missed uint64 `json:"missed,omitempty"`
				Reset  bool   `json:"reset,omitempty"`
			}{backlog.Missed, backlog.Reset})
			s.notes = append([][]byte{s.o.Encoder.Note(b)}, s.notes...)
		}
		if s.exp != nil {
			backlog.Messages = s.exp.trim(backlog.Messages)
		}
		s.queue = append(backlog.Messages, s.queue...)
		s.maxQueue += len(backlog.Messages)
	}
	if s.exp != nil {
		s.armLocked()
	}
	s.writing = false
	s.kickLocked()
}

// Conn returns the connection given to Attach, for the transport's reader.
func (s *Session) Conn() net.Conn { return s.conn }

// Socket returns the connection's descriptor, for the reader to wait on.
func (s *Session) Socket() netpoll.Socket { return s.sock }

// Transport returns the transport's name, for a Registry's counts.
func (s *Session) Transport() string { return s.o.Transport }

// Send queues m. It runs under the wall's lock, so it only appends: a
// reader that falls MaxQueue messages behind is cut off rather than
// waited on (it resumes from its cursor).
func (s *Session) Send(m *wall.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing || s.done:
		return
	case s.exp != nil && s.exp.expired(m):
		s.expireLocked() // stored after the token expired: not for this peer
	case len(s.queue) >= s.maxQueue:
		s.cutLocked(SlowReader)
	default:
		s.queue = append(s.queue, m)
		s.live = m
	}
	s.kickLocked()
}

// Reset replaces what is pending with a reset notice and the wall's new
// cache: the wall's history was replaced (see wall.Wall.Replace), and the
// peer starts over from it. It runs under the wall's lock.
func (s *Session) Reset(msgs []*wall.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.done {
		return
	}
	if s.exp != nil {
		msgs = s.exp.trim(msgs)
	}
	s.notes = append(s.notes, s.o.Encoder.Note([]byte(`{"reset": true}`)))
	s.queue = append(s.queue[:0], msgs...)
	s.live = nil // the cache, not a delivery
	s.maxQueue = len(msgs) + s.o.MaxQueue
	s.reset = true
	s.kickLocked()
}

// Note queues a frame that is not a message, already encoded for the
// transport (a pong, an error). Notes are bounded like messages: a peer
// that makes the server queue MaxNotes of them without reading them is cut
// off (ControlFlood) and Note returns false, as it does once the session
// is closing: the reader should then stop reading.
func (s *Session) Note(frame []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing || s.done:
		return false
	case len(s.notes) >= s.o.MaxNotes:
		s.cutLocked(ControlFlood)
		s.kickLocked()
		return false
	}
	s.notes = append(s.notes, frame)
	s.kickLocked()
	return true
}

// Keepalive asks for a ping; the Registry's keepalive loop calls it.
func (s *Session) Keepalive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ping = true
	s.kickLocked()
}

// Close cuts the session off for r with the encoder's final frame for r.
func (s *Session) Close(r Reason) { s.CloseWith(r, s.o.Encoder.Close(r)) }

// CloseWith cuts the session off for r with final as its last frame (nil
// for none): the transport's own answer, such as a WebSocket close frame
// with a protocol error's code. What is pending still goes before it.
func (s *Session) CloseWith(r Reason, final []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		s.endLocked(r)
		s.closing, s.final = true, final
	}
	s.kickLocked()
}

// Shutdown closes the session for the server's shutdown; the Registry
// calls it. A writer blocked on a peer that stopped reading gives up
// within CloseGrace, so shutdown stays bounded.
func (s *Session) Shutdown() {
	s.Close(Shutdown)
	if s.conn != nil {
		s.conn.SetWriteDeadline(time.Now().Add(s.o.CloseGrace))
	}
}

// Reason returns why the session ended or is ending; Live until then.
func (s *Session) Reason() Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// cutLocked ends a peer that fell behind: what is pending is dropped, the
// final frame for r goes if the socket takes it. s.mu must be held.
func (s *Session) cutLocked(r Reason) {
	s.queue, s.notes = nil, nil
	s.endLocked(r)
	s.closing, s.final = true, s.o.Encoder.Close(r)
	// A writeLoop blocked on the stalled peer would hold the connection
	// until WriteWait: fail its write now. Deadlines may be set from any
	// goroutine.
	if s.conn != nil {
		s.conn.SetWriteDeadline(time.Now())
	}
}

// endLocked records r as the session's reason unless it has one, and
// counts it. s.mu must be held.
func (s *Session) endLocked(r Reason) {
	if s.reason == Live && r != Live {
		s.reason = r
		if s.o.Ended != nil {
			s.o.Ended.Add(r)
		}
	}
}

// Finish is called by the transport's reader as it ends, after it has
// unsubscribed the session from its wall, with why it ended (unless the
// session has a reason already). It stops the writer and waits for it,
// and closes the connection. The reader calls it once, and nothing
// touches the session's connection afterwards.
func (s *Session) Finish(r Reason) {
	s.mu.Lock()
	s.endLocked(r)
	s.done = true
	s.queue, s.notes = nil, nil
	if s.exp != nil && s.exp.timer != nil {
		s.exp.timer.Stop()
	}
	closing, writing := s.closing, s.writing
	s.mu.Unlock()
	close(s.readDone)
	if !closing || !writing {
		s.conn.Close() // a blocked writer fails at once
	}
	s.writer.Wait()
	s.conn.Close()
}

// CatchPanic, deferred at the root of the transport's reader goroutine,
// turns a panic into the end of this connection (InternalError, logged
// with its stack, the encoder's final frame for it sent) instead of the
// end of the process. It must be deferred directly, so that its recover
// sees the panic, and run before the reader's Finish.
func (s *Session) CatchPanic(where string) {
	if p := recover(); p != nil {
		s.reportPanic(where, p, false)
	}
}
