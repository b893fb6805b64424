package outbound

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	"wall/server/internal/netpoll"
	"wall/wall"
)

// kickLocked schedules a flush unless one is scheduled or running: a
// flusher worker writes without blocking, and only a session whose socket
// is full gets a writeLoop goroutine of its own. s.mu must be held.
func (s *Session) kickLocked() {
	if s.writing || s.done {
		return
	}
	s.writing = true
	s.writer.Add(1)
	if s.o.Flusher == nil || !s.o.Flusher.Submit(s) {
		go s.writeLoop(nil, false)
	}
}

// take moves everything pending into bufs, in wire order, and reports
// whether the final frame is among them, and the newest live message
// among them (for Lag; nil if none). With nothing pending it clears
// writing and returns ok false: the writer's turn is over. Only the
// session's writer calls it.
func (s *Session) take(bufs net.Buffers) (_ net.Buffers, live *wall.Message, closing, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, notes, ping := s.queue, s.notes, s.ping
	s.notes, s.ping, live, s.live = nil, false, s.live, nil
	// The queue's array is reused once its messages are in bufs (below),
	// so a delivery allocates nothing; a queue that grew large is let go.
	s.queue = nil
	defer func() {
		if cap(q) <= 64 && !s.done {
			clear(q)
			s.queue = q[:0]
		}
	}()
	if s.done {
		// The reader has ended: only a pending final frame still goes.
		q, notes, ping, live = nil, nil, false, nil
	}
	if len(q) == 0 && len(notes) == 0 && !ping && !s.closing {
		if !s.done {
			s.writing = false
		}
		return bufs, nil, false, false
	}
	bufs = append(bufs, notes...)
	for _, m := range q {
		bufs = s.o.Encoder.AppendMessage(bufs, m)
	}
	if ping {
		bufs = append(bufs, s.o.Encoder.Ping())
	}
	if s.closing && s.final != nil {
		bufs = append(bufs, s.final)
	}
	return bufs, live, s.closing, true
}

// Flush writes what is pending without blocking; only a flusher worker
// calls it, after kickLocked. When the socket cannot take everything, the
// rest goes to a writeLoop goroutine, so a slow reader never holds a
// worker.
func (s *Session) Flush(scratch *net.Buffers, w *netpoll.Writer) {
	owned := true // this flush is the session's writer (s.writer counts it)
	defer func() {
		// A panic ends this connection, not the worker: the worker's
		// goroutine serves every connection.
		if p := recover(); p != nil {
			clear(*scratch)
			s.reportPanic("flusher worker", p, true)
			if owned {
				s.writer.Done()
			}
		}
	}()
	for {
		bufs, live, closing, ok := s.take((*scratch)[:0])
		*scratch = bufs
		if !ok {
			owned = false
			s.writer.Done()
			return
		}
		n, err := w.Write(s.sock, bufs)
		var rest net.Buffers
		if err == nil {
			rest = unwritten(bufs, n) // a copy: bufs is the worker's scratch
		}
		clear(bufs) // drop the scratch's references to message frames
		if err != nil {
			s.failed(err)
			owned = false
			s.writer.Done()
			return
		}
		s.observeLag(live) // written, or all but rest: the socket has it
		if len(rest) > 0 || closing {
			owned = false
			go s.writeLoop(rest, closing)
			return
		}
	}
}

// writeLoop writes with blocking writes under a deadline: first rest
// (what Flush could not write), then whatever is pending, until nothing
// is. It ends the connection after the final frame. While it runs it is
// the session's only writer.
func (s *Session) writeLoop(rest net.Buffers, closing bool) {
	defer s.writer.Done()
	defer func() {
		if p := recover(); p != nil {
			s.reportPanic("writeLoop", p, true)
		}
	}()
	bufs := rest
	var live *wall.Message
	for {
		if len(bufs) > 0 {
			wait := s.o.WriteWait
			if closing {
				wait = s.o.CloseGrace // shutdown or a cut-off: don't linger
			}
			s.conn.SetWriteDeadline(time.Now().Add(wait))
			if _, err := bufs.WriteTo(s.conn); err != nil {
				s.failed(err)
				return
			}
			s.observeLag(live)
		}
		if closing {
			if s.o.CloseReply {
				// Wait briefly for the peer's reply, which ends the reader.
				t := time.NewTimer(s.o.CloseGrace)
				select {
				case <-s.readDone:
				case <-t.C:
				}
				t.Stop()
			}
			s.conn.Close()
			return
		}
		var ok bool
		bufs, live, closing, ok = s.take(nil)
		if !ok {
			return
		}
	}
}

// lagSample is how many writes with a live message a session makes per
// observation of Lag: the delivery lag is sampled, so that a fan-out to
// many connections costs a clock read and a histogram update on one write
// in lagSample.
const lagSample = 16

// observeLag samples the delivery lag of live, the newest live message of
// a write that went out: the time from when the sequencer stored it
// (wall.Message.Time, in milliseconds) to now. Only the session's writer
// calls it.
func (s *Session) observeLag(live *wall.Message) {
	if live == nil || s.o.Lag == nil || live.Time <= 0 {
		return
	}
	s.writes++
	if s.writes%lagSample != 1 {
		return
	}
	if d := time.Now().UnixMilli() - live.Time; d >= 0 {
		s.o.Lag.Observe(float64(d) / 1e3)
	}
}

// failed ends the session after a failed write: the connection is closed,
// which ends the reader; writing stays set, so no writer starts again.
func (s *Session) failed(err error) {
	r := WriteError
	if errors.Is(err, os.ErrDeadlineExceeded) {
		r = WriteTimeout
	}
	s.mu.Lock()
	s.endLocked(r)
	s.mu.Unlock()
	s.conn.Close()
}

// reportPanic logs a recovered panic with its stack and ends the session
// (InternalError). A writer's panic closes the connection at once; a
// reader's lets the writer send the final frame first (Finish follows).
func (s *Session) reportPanic(where string, p any, writer bool) {
	log := s.o.Log
	if log == nil {
		log = slog.Default()
	}
	log.Error("panic serving a connection: connection closed", "transport", s.o.Transport,
		"goroutine", where, "panic", p, "stack", string(debug.Stack()))
	if writer {
		s.mu.Lock()
		s.endLocked(InternalError)
		s.mu.Unlock()
		s.conn.Close() // ends the reader, which finishes the session
		return
	}
	s.Close(InternalError)
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
