package longpoll

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"time"
	"wall/server/internal/admit"
	"wall/server/internal/netpoll"
	"wall/wall"
)

// flush answers a poll waiting in the reactor, on a flusher worker: the
// client is answered with one non-blocking write, and the connection then
// waits in the reactor for the client's next request. Should the socket
// not take the whole answer, or the connection have to close, a goroutine
// finishes (afterFlush).
func (pc *pollConn) Flush(*net.Buffers, *netpoll.Writer) {
	defer pc.recoverConn()
	pc.queued.Store(false)
	s := pc.stamp()
	if s.state() != stateWaiting {
		return // someone else has it, or another worker answered
	}
	s, ok := pc.change(s, stateClaimed)
	if !ok {
		return
	}
	w, c := pc.wall, pc.cursor
	res, _ := w.Poll(c)
	for len(res.Messages) == 0 {
		// Nothing after the cursor yet (a cursor ahead of this instance's
		// wall): wait on. A Send after the move queues the poll again; as
		// in waitAnswer, only locals and the stamp after it.
		s = pc.set(stateWaiting)
		pc.hookParked()
		if res, _ = w.Poll(c); len(res.Messages) == 0 {
			if pc.ready.Load() {
				if _, ok := pc.change(s, stateBusy); ok {
					go pc.serve(true) // the client sent something meanwhile
				}
			}
			return
		}
		if s, ok = pc.change(s, stateClaimed); !ok {
			return
		}
	}
	if pc.shuttingDown() {
		pc.keepAlive = false
	}
	bp := pc.e.bufs.Get().(*[]byte)
	var full []byte
	if pc.expiring && !time.Now().Before(pc.pollDeadline()) {
		// The token is refused by now: the timeout's answer, and the
		// next poll, with a new token, gets these from the same cursor.
		res.Messages = nil
		full = append((*bp)[:respReserve], TimeoutResponse(c)...)
	} else {
		full = AppendPollResponse((*bp)[:respReserve], res)
	}
	b := pc.response(http.StatusOK, full)
	// The worker owns the connection: its descriptor stays open.
	n, err := pc.sock.WriteNow(b)
	pc.rest, pc.failed = nil, err != nil
	if err == nil && n < len(b) {
		pc.rest = bytes.Clone(b[n:])
		pc.e.workerHandoffs.Add(1)
	}
	pc.e.workerAnswers.Add(1)
	if err == nil && len(res.Messages) > 0 {
		pc.observeLag(res.Messages[len(res.Messages)-1])
	}
	pc.putBuf(bp, full)
	if pc.failed || pc.rest != nil || !pc.keepAlive {
		pc.set(stateBusy)
		go pc.afterFlush()
		return
	}
	pc.markIdle()
	if pc.e.cfg.IdleTimeout < pc.e.cfg.PollTimeout {
		// The timer is set for the poll's deadline: too late.
		pc.setTimer(pc.e.cfg.IdleTimeout)
	}
	if !pc.parked(stateIdle) {
		go pc.serve(false) // its next request came while the worker had it
	}
}

// observeLag samples the delivery lag of m, the newest message of an
// answer a worker wrote because a message came: from when the sequencer
// stored it (wall.Message.Time, milliseconds) to now. The owner calls it.
func (pc *pollConn) observeLag(m *wall.Message) {
	if pc.e.cfg.Lag == nil || m.Time <= 0 {
		return
	}
	pc.answers++
	if pc.answers%16 != 1 {
		return
	}
	if d := time.Now().UnixMilli() - m.Time; d >= 0 {
		pc.e.cfg.Lag.Observe(float64(d) / 1e3)
	}
}

// afterFlush finishes what a worker's answer left: the rest of the
// answer to write, or the connection to close.
func (pc *pollConn) afterFlush() {
	defer pc.recoverConn()
	if pc.failed {
		pc.finish()
		return
	}
	pc.serve(false)
}

func (pc *pollConn) answerPoll(res wall.Result, nb bool) flow {
	bp := pc.e.bufs.Get().(*[]byte)
	b := AppendPollResponse((*bp)[:respReserve], res)
	f := pc.answer(b, nb)
	pc.putBuf(bp, b)
	return f
}

func (pc *pollConn) answerTimeout(nb bool) flow {
	bp := pc.e.bufs.Get().(*[]byte)
	b := append((*bp)[:respReserve], TimeoutResponse(pc.cursor)...)
	f := pc.answer(b, nb)
	pc.putBuf(bp, b)
	return f
}

// answerError answers a refused poll with the error's status, its
// Retry-After if any, and the error body, as the server's error handler
// does, and the connection goes on.
func (pc *pollConn) answerError(err *admit.Error, nb bool) flow {
	bp := pc.e.bufs.Get().(*[]byte)
	b := AppendErrorBody((*bp)[:respReserve], err.Message)
	pc.retryAfter = int32(err.RetryAfter)
	f := pc.answerStatus(err.Status, b, nb)
	pc.retryAfter = 0
	pc.putBuf(bp, b)
	return f
}

// answer writes a 200 response whose body follows the respReserve bytes
// reserved at the start of b. With nb, what the socket does not take is
// left in pc.rest for a goroutine to write (flowBlock).
func (pc *pollConn) answer(b []byte, nb bool) flow { return pc.answerStatus(http.StatusOK, b, nb) }

// answerStatus is answer with status code.
func (pc *pollConn) answerStatus(code int, b []byte, nb bool) flow {
	if pc.shuttingDown() {
		pc.keepAlive = false // as net/http does during Shutdown
	}
	b = pc.response(code, b)
	if nb {
		n, err := pc.sock.WriteNow(b)
		switch {
		case err != nil:
			return flowDone
		case n < len(b):
			pc.rest = bytes.Clone(b[n:])
			pc.resumeWait = false
			return flowBlock
		}
	} else if !pc.write(b) {
		return flowDone
	}
	pc.markIdle()
	return flowOn
}

// response writes the head of a response with status code right-aligned
// into the respReserve bytes reserved at the start of b, whose body
// follows, and returns head and body: they go out in one write. The poll
// is answered: its hold on the client's connections ends.
func (pc *pollConn) response(code int, b []byte) []byte {
	pc.hold.Release()
	var hb [respReserve]byte
	h := hb[:0]
	if code == http.StatusOK {
		h = append(h, "HTTP/1.1 200 OK\r\n"...)
	} else {
		h = append(h, "HTTP/1.1 "...)
		h = strconv.AppendInt(h, int64(code), 10)
		h = append(h, ' ')
		h = append(h, http.StatusText(code)...)
		h = append(h, "\r\n"...)
	}
	if code == http.StatusUnauthorized { // as the net/http paths answer
		h = append(h, "WWW-Authenticate: Bearer realm=\"wall\"\r\n"...)
	}
	if pc.retryAfter > 0 {
		h = append(h, "Retry-After: "...)
		h = strconv.AppendInt(h, int64(pc.retryAfter), 10)
		h = append(h, "\r\n"...)
	}
	h = append(h, "Content-Type: application/json; charset=UTF-8\r\nContent-Length: "...)
	h = strconv.AppendInt(h, int64(len(b)-respReserve), 10)
	if !pc.keepAlive {
		h = append(h, "\r\nConnection: close"...)
	}
	h = append(h, "\r\n\r\n"...)
	start := respReserve - len(h)
	copy(b[start:], h)
	return b[start:]
}

// write sends b: a non-blocking write first, then blocking writes under a
// deadline for what the socket could not take. A client that does not read
// is cut off after pc.e.cfg.WriteTimeout.
func (pc *pollConn) write(b []byte) bool {
	n, err := netpoll.TryWrite(pc.sock, net.Buffers{b})
	if err != nil {
		return false
	}
	if n < len(b) {
		wait := pc.e.cfg.WriteTimeout
		if pc.shuttingDown() {
			wait = pc.e.cfg.CloseGrace
		}
		pc.conn.SetWriteDeadline(time.Now().Add(wait))
		if _, err := pc.conn.Write(b[n:]); err != nil {
			return false
		}
	}
	return true
}

// putIn gives pc.in back to the pool.
func (pc *pollConn) putIn() {
	if pc.in != nil {
		*pc.in = (*pc.in)[:0]
		pc.e.bufs.Put(pc.in)
		pc.in = nil
	}
}

// putBuf gives bp back to the pool holding b, its content, unless b grew
// too big to keep.
func (pc *pollConn) putBuf(bp *[]byte, b []byte) {
	if cap(b) <= 256<<10 {
		*bp = b[:0]
		pc.e.bufs.Put(bp)
	}
}
