package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/server/internal/netpoll"
	"wall/wall"
)

// The long-poll engine. A poll that has to wait leaves net/http: its
// connection is hijacked and becomes a pollConn, which holds no buffers
// while it waits, instead of net/http's connection goroutine, its
// background reader, its bufio reader and writer, its response buffer,
// the request and echo's context. After the answer the engine reads the
// next request on the connection (keep-alive re-polls) and serves it if
// it is a poll; anything else goes back to net/http through the Server's
// listener (listener.go), with the bytes already read, so net/http and
// echo serve it exactly as before.
//
// A keep-alive poll waits the fast way, with no goroutine: its socket is
// watched by the reactor (reactor_linux.go), a message hands the
// connection to a flusher worker, which answers it with one non-blocking
// write (flush), and the client's next request is read and served by the
// reactor's goroutine, a batch of connections per wake-up. One read and
// one write serve a whole poll, with no goroutine parked or woken. Where
// a step would block (a request not all here, a cursor to sync from
// Redis, an answer the socket does not take whole, a request for
// net/http) the connection goes on from there on a goroutine of its own
// (serve), which gives it back to the reactor at its next wait. Other
// polls (pipelined requests, Connection: close, no reactor) wait the slow
// way, on their goroutine, woken to answer.
//
// Measured with ../shared/wallbench on a 2-core box: see the README for
// the memory per pending poll and the CPU per delivery.

// Engine limits.
const (
	maxPollHead = 8 << 10          // longest request head the engine reads
	headTimeout = 10 * time.Second // to read a whole request once it began
	respReserve = 128              // room for the response head before the body
)

// newPollBuf makes the buffers of Server.pollBufs: a request head and body,
// or a response.
func newPollBuf() any {
	b := make([]byte, 0, maxPollHead+pollArgsLimit)
	return &b
}

// pollConn is a keep-alive connection the engine holds.
//
// One owner at a time serves it (see connState): its goroutine, the
// reactor's, a flusher worker or its timer's. The others touch only woken
// and wake (set by Send and Reset under the wall's lock and by wakeUp,
// the shutdown closer, along with a read deadline in the past that ends
// a slow wait), the atomics (st, queued, ready, due, firesAt), and
// timer, which anyone may set to fire sooner: onTimer checks before it
// acts.
type pollConn struct {
	s    *Server
	ln   *listener
	rx   *netpoll.Poller // watches conn while the engine holds it; nil: polls wait the slow way
	conn net.Conn        // the socket (never a prefixConn)
	sock netpoll.Socket  // conn's descriptor, to wait without a buffer
	// pending holds bytes read from conn but not handled yet: a pipelined
	// request.
	pending []byte
	// pipelined is set when the client sent more while a poll waited: the
	// socket stays readable, so the wait can no longer watch it.
	pipelined bool
	// back, when not nil, is the request to hand back to net/http.
	back []byte

	wall      *wall.Wall // the current poll's wall, held with hub.Acquire
	cursor    wall.Cursor
	deadline  time.Time // of the current poll
	keepAlive bool

	woken atomic.Bool   // a message, a reset or shutdown came
	wake  chan struct{} // signalled with woken; 1-buffered

	st         atomic.Uint64 // a stamp: state and generation (pollstate.go)
	queued     atomic.Bool   // submitted to the flusher and not yet taken
	subscribed bool          // pc is among wall's subscribers
	rest       []byte        // an answer's bytes the socket did not take: a goroutine writes them
	failed     bool          // a worker's write failed
	resumeWait bool          // after flowBlock: the goroutine waits for the answer (or reads the next request)

	// ready is set by the reactor when the socket becomes readable, and
	// cleared by whoever then looks at it: an owner that parks the
	// connection while it is set takes it back.
	ready atomic.Bool
	// due is when the wait in the reactor ends (Unix ns): the poll's
	// deadline while it waits for messages, the idle timeout after the
	// answer. timer fires by then and ends the wait, or looks again.
	due     atomic.Int64
	timer   *time.Timer
	firesAt atomic.Int64 // when timer fires (Unix ns), as last set

	req pollRequest // the request being admitted (next)

	// in is a pooled buffer of bytes read and not yet handled: a
	// connection waiting holds no buffer.
	in *[]byte
}

var _ wall.Subscriber = (*pollConn)(nil)

// parkPoll moves a poll that has to wait out of net/http, if the engine is
// enabled and the request allows it: HTTP/1.1 with its body read to the
// end. It reports whether it did; if not, the caller keeps waiting in
// net/http. The net/http goroutine returns right after.
func (s *Server) parkPoll(c echo.Context, w *wall.Wall, cursor wall.Cursor, deadline time.Time) bool {
	l := s.ln.Load()
	r := c.Request()
	if l == nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 || len(r.TransferEncoding) > 0 {
		return false
	}
	switch r.Method {
	case http.MethodGet:
		if r.ContentLength != 0 {
			return false
		}
	case http.MethodPost:
		// readArgs read a urlencoded (or ignored) body to the end; a
		// multipart one may not be.
		if r.ContentLength < 0 || strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "multipart/") {
			return false
		}
	default:
		return false
	}
	pc := &pollConn{s: s, ln: l, wake: make(chan struct{}, 1)}
	// Registered while http.Server still tracks the request, so Wait
	// cannot miss a connection that Shutdown let through.
	if !s.polls.enter(pc) {
		return false
	}
	conn, brw, err := c.Response().Hijack()
	if err != nil {
		s.polls.leave(pc)
		return false
	}
	// Bytes net/http read ahead (a pipelined request) are served after
	// the answer.
	if p, ok := conn.(*prefixConn); ok {
		pc.pending = append(pc.pending, p.buf...)
		conn = p.Conn
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pc.pending = append(pc.pending, b...)
	}
	pc.sock = netpoll.NewSocket(conn)
	if l.rx != nil && pc.sock.Valid() {
		pc.timer = time.AfterFunc(s.cfg.PollTimeout, pc.onTimer)
		pc.firesAt.Store(time.Now().Add(s.cfg.PollTimeout).UnixNano())
		if l.rx.Add(pc.sock, pc) {
			pc.rx = l.rx
		} else {
			pc.timer.Stop()
		}
	}
	s.polls.attach(pc, conn)
	pc.wall = s.hub.Acquire(w.Name()) // the caller's hold keeps it the same wall
	pc.cursor, pc.deadline, pc.keepAlive = cursor, deadline, !r.Close
	go pc.serve(true)
	return true
}

// Send has the waiting poll answered: by a flusher worker, or by its own
// goroutine, woken. Called under the wall's lock: never blocks.
func (pc *pollConn) Send(*wall.Message) {
	switch pc.stamp().state() {
	case stateWaiting:
		if pc.queued.CompareAndSwap(false, true) && !pc.s.flusher.Submit(pc) {
			go pc.Flush(nil, nil) // the queue is full
		}
	case stateWaitSlow:
		if pc.woken.CompareAndSwap(false, true) {
			pc.signal()
		}
	}
}

// Reset wakes the waiting poll, whose Poll then sees the new history.
func (pc *pollConn) Reset([]*wall.Message) { pc.Send(nil) }

// wakeUp wakes the connection for shutdown, whatever it is doing.
func (pc *pollConn) wakeUp() {
	pc.woken.Store(true)
	pc.signal()
	if pc.rx != nil {
		pc.setTimer(0) // one waiting in the reactor: onTimer answers or closes it
	}
}

func (pc *pollConn) signal() {
	// Deadlines may be set from any goroutine; this one ends waitReadable.
	pc.conn.SetReadDeadline(time.Now())
	select {
	case pc.wake <- struct{}{}:
	default:
	}
}

func (pc *pollConn) shuttingDown() bool {
	select {
	case <-pc.s.hub.Done():
		return true
	default:
		return false
	}
}

// serve is a goroutine serving the connection, from waiting for its
// poll's answer (wait) or from reading its next request, until it is done
// or waits in the reactor.
func (pc *pollConn) serve(wait bool) {
	if pc.run(wait, false) == flowDone {
		pc.finish()
	}
}

// Readable is the reactor's: the socket has something to read, or hung
// up. A connection waiting in the reactor is served on the reactor's
// goroutine (run, not blocking) until it waits again.
func (pc *pollConn) Readable() {
	pc.ready.Store(true)
	from, ok := pc.take(stateIdle, stateWaiting)
	if !ok {
		return // its owner sees ready when it parks it
	}
	switch pc.run(from == stateWaiting, true) {
	case flowBlock:
		go pc.serve(pc.resumeWait)
	case flowDone:
		if pc.back != nil {
			go pc.finish() // handBack blocks until net/http takes it
		} else {
			pc.finish()
		}
	}
}

// onTimer runs when a wait in the reactor may be due (or at shutdown): it
// answers a poll whose deadline passed, closes a connection idle too
// long, and otherwise leaves the connection waiting, the timer re-armed.
func (pc *pollConn) onTimer() {
	from, ok := pc.take(stateWaiting, stateIdle)
	switch {
	case !ok && from == stateClaimed:
		pc.setTimer(10 * time.Millisecond) // look again once the worker is done
		return
	case !ok:
		return // its owner re-arms the timer when it parks it; or it is done
	case from == stateWaiting:
		pc.serve(true) // waitAnswer answers if due, or waits again
		return
	}
	left := time.Until(time.Unix(0, pc.due.Load()))
	if left <= 0 || pc.shuttingDown() {
		pc.finish()
		return
	}
	pc.setTimer(left)
	if !pc.parked(stateIdle) {
		pc.serve(false) // its request came
	}
}

// parked moves the connection to st, a wait in the reactor, and reports
// whether it waits: not if it became readable, or shutdown began, in the
// meantime and the caller took it back (that very wait: its stamp).
func (pc *pollConn) parked(st connState) bool {
	s := pc.set(st)
	if !pc.ready.Load() && !pc.shuttingDown() {
		return true
	}
	_, took := pc.change(s, stateBusy)
	return !took
}

// finish ends the connection's time in the engine: it lets go of the wall,
// then hands the connection back to net/http or closes it.
func (pc *pollConn) finish() {
	pc.set(stateDone)
	if pc.timer != nil {
		pc.timer.Stop()
	}
	if pc.rx != nil {
		pc.rx.Remove(pc.sock, pc) // before the descriptor may be reused
	}
	pc.putIn()
	if pc.wall != nil {
		pc.wall.Unsubscribe(pc)
		pc.s.hub.Release(pc.wall)
		pc.wall = nil
	}
	pc.s.polls.leave(pc)
	if pc.back != nil {
		pc.conn.SetDeadline(time.Time{})
		pc.ln.handBack(&prefixConn{Conn: pc.conn, buf: pc.back})
		return
	}
	pc.conn.Close()
}

// run serves the connection: it waits for its poll's answer (wait), reads
// the next request, and so on. It returns flowDone or flowParked; run by
// the reactor (nb), it never blocks, and returns flowBlock where it would.
func (pc *pollConn) run(wait, nb bool) flow {
	for {
		if pc.rest != nil { // the rest of an answer (never with nb)
			rest := pc.rest
			pc.rest = nil
			if !pc.write(rest) {
				return flowDone
			}
			pc.markIdle()
		}
		if wait {
			if f := pc.waitAnswer(nb); f != flowOn {
				return f
			}
		}
		if !pc.keepAlive {
			return flowDone
		}
		var f flow
		if wait, f = pc.next(nb); f != flowOn {
			return f
		}
	}
}

// waitAnswer waits for messages after the cursor, the poll deadline or
// shutdown, and answers (or has a flusher worker answer). It returns
// flowDone when the connection is done: the client hung up or the answer
// could not be written.
func (pc *pollConn) waitAnswer(nb bool) flow {
	for {
		if !pc.subscribed {
			pc.wall.Subscribe(pc, wall.Cursor{})
			pc.subscribed = true
		}
		if pc.rx != nil && pc.keepAlive && len(pc.pending) == 0 && !pc.pipelined {
			if pc.ready.Load() {
				// The client sent something while its poll waits.
				pc.ready.Store(false)
				switch err := pc.sock.Peek(); err {
				case syscall.EAGAIN:
				case nil:
					// The next request: read after the answer, and the
					// wait no longer watches the socket (as net/http).
					pc.pipelined = true
					continue
				default:
					return flowDone // hung up: write nothing, as Tornado
				}
			}
			// From the move on, the connection may be another's: only
			// locals after it, and it is taken back by its stamp only,
			// so that res answers this poll and no later one. A
			// message after the move reaches Send; shutdown after it
			// reaches onTimer.
			w, c, deadline := pc.wall, pc.cursor, pc.deadline
			pc.arm(deadline)
			s := pc.set(stateWaiting)
			pc.hookParked()
			res, _ := w.Poll(c)
			if len(res.Messages) > 0 || pc.shuttingDown() || !time.Now().Before(deadline) {
				if _, ok := pc.change(s, stateBusy); !ok {
					return flowParked // a worker answers it
				}
				return pc.answerNow(res, nb)
			}
			if pc.ready.Load() {
				if _, ok := pc.change(s, stateBusy); ok {
					continue
				}
			}
			return flowParked
		}
		if nb {
			pc.resumeWait = true
			return flowBlock
		}
		// The slow way. The deadline first, then the waiting state, then
		// poll: a message after that state is set reaches Send, so none
		// is missed; shutdown is checked after the deadline is set for
		// the same reason.
		pc.conn.SetReadDeadline(pc.deadline)
		pc.woken.Store(false)
		select {
		case <-pc.wake:
		default:
		}
		pc.set(stateWaitSlow)
		res, _ := pc.wall.Poll(pc.cursor)
		if len(res.Messages) == 0 && !pc.shuttingDown() && time.Now().Before(pc.deadline) {
			err := pc.wait()
			pc.leaveSlow()
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return flowDone // the client hung up: write nothing, as Tornado
			}
			continue
		}
		pc.leaveSlow()
		return pc.answerNow(res, false)
	}
}

// arm has the timer fire by t, the end of a wait in the reactor. A timer
// that fires earlier (the last poll's deadline) is left alone: onTimer
// then finds the poll not due and it waits on, the timer re-armed. So a
// re-poll costs no timer update, and a connection one early wake-up per
// PollTimeout.
func (pc *pollConn) arm(t time.Time) {
	ns := t.UnixNano()
	pc.due.Store(ns)
	if at := pc.firesAt.Load(); at > time.Now().UnixNano() && at <= ns {
		return
	}
	pc.setTimer(time.Until(t))
}

// setTimer has the timer fire in d.
func (pc *pollConn) setTimer(d time.Duration) {
	pc.firesAt.Store(time.Now().Add(d).UnixNano())
	pc.timer.Reset(d)
}

// markIdle starts the idle timeout: an answer was written.
func (pc *pollConn) markIdle() {
	pc.due.Store(time.Now().Add(pc.s.cfg.IdleTimeout).UnixNano())
}

// answerNow answers with res, or without messages if it has none.
func (pc *pollConn) answerNow(res wall.Result, nb bool) flow {
	if len(res.Messages) > 0 {
		return pc.answerPoll(res, nb)
	}
	return pc.answerTimeout(nb)
}

// leaveSlow ends a slow wait. Unsubscribing under the wall's lock
// guarantees no Send still signals (and so sets a deadline) afterwards.
func (pc *pollConn) leaveSlow() {
	pc.wall.Unsubscribe(pc)
	pc.subscribed = false
	pc.set(stateBusy)
}

// flush answers a poll waiting in the reactor, on a flusher worker: the
// client is answered with one non-blocking write, and the connection then
// waits in the reactor for the client's next request. Should the socket
// not take the whole answer, or the connection have to close, a goroutine
// finishes (afterFlush).
func (pc *pollConn) Flush(*net.Buffers, *netpoll.Writer) {
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
	bp := pc.s.pollBufs.Get().(*[]byte)
	full := appendPollResponse((*bp)[:respReserve], res)
	b := pc.response(http.StatusOK, full)
	// The worker owns the connection: its descriptor stays open.
	n, err := pc.sock.WriteNow(b)
	pc.rest, pc.failed = nil, err != nil
	if err == nil && n < len(b) {
		pc.rest = bytes.Clone(b[n:])
		pc.s.polls.workerHandoffs.Add(1)
	}
	pc.s.polls.workerAnswers.Add(1)
	pc.putBuf(bp, full)
	if pc.failed || pc.rest != nil || !pc.keepAlive {
		pc.set(stateBusy)
		go pc.afterFlush()
		return
	}
	pc.markIdle()
	if pc.s.cfg.IdleTimeout < pc.s.cfg.PollTimeout {
		// The timer is set for the poll's deadline: too late.
		pc.setTimer(pc.s.cfg.IdleTimeout)
	}
	if !pc.parked(stateIdle) {
		go pc.serve(false) // its next request came while the worker had it
	}
}

// afterFlush finishes what a worker's answer left: the rest of the
// answer to write, or the connection to close.
func (pc *pollConn) afterFlush() {
	if pc.failed {
		pc.finish()
		return
	}
	pc.serve(false)
}

// putIn gives pc.in back to the pool.
func (pc *pollConn) putIn() {
	if pc.in != nil {
		*pc.in = (*pc.in)[:0]
		pc.s.pollBufs.Put(pc.in)
		pc.in = nil
	}
}

// putBuf gives bp back to the pool holding b, its content, unless b grew
// too big to keep.
func (pc *pollConn) putBuf(bp *[]byte, b []byte) {
	if cap(b) <= 256<<10 {
		*bp = b[:0]
		pc.s.pollBufs.Put(bp)
	}
}

// wait parks until the connection is woken, its read deadline passes, or
// the client sends something or hangs up. It watches the socket without a
// buffer; once the client has sent more (pipelined), it waits on wake and
// a timer instead, as net/http would (a hang-up then goes unnoticed until
// the answer).
func (pc *pollConn) wait() error {
	if len(pc.pending) == 0 && !pc.pipelined {
		err := pc.sock.WaitReadable()
		if err != nil || !pc.sock.Valid() {
			if err == nil {
				pc.pipelined = true // no socket to watch
			} else {
				return err
			}
		} else {
			pc.pipelined = true // data: the next request, read after the answer
		}
	}
	t := time.NewTimer(time.Until(pc.deadline))
	defer t.Stop()
	select {
	case <-pc.wake:
	case <-t.C:
	case <-pc.s.hub.Done():
	}
	return nil
}

func (pc *pollConn) answerPoll(res wall.Result, nb bool) flow {
	bp := pc.s.pollBufs.Get().(*[]byte)
	b := appendPollResponse((*bp)[:respReserve], res)
	f := pc.answer(b, nb)
	pc.putBuf(bp, b)
	return f
}

func (pc *pollConn) answerTimeout(nb bool) flow {
	bp := pc.s.pollBufs.Get().(*[]byte)
	b := append((*bp)[:respReserve], timeoutResponse(pc.cursor)...)
	f := pc.answer(b, nb)
	pc.putBuf(bp, b)
	return f
}

// answerError answers a refused poll with status code and the error
// body, as the server's error handler does, and the connection goes on.
func (pc *pollConn) answerError(code int, msg string, nb bool) flow {
	bp := pc.s.pollBufs.Get().(*[]byte)
	b := appendErrorBody((*bp)[:respReserve], msg)
	f := pc.answerStatus(code, b, nb)
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
// follows, and returns head and body: they go out in one write.
func (pc *pollConn) response(code int, b []byte) []byte {
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
// is cut off after writeWait.
func (pc *pollConn) write(b []byte) bool {
	n, err := netpoll.TryWrite(pc.sock, net.Buffers{b})
	if err != nil {
		return false
	}
	if n < len(b) {
		wait := writeWait
		if pc.shuttingDown() {
			wait = closeGrace
		}
		pc.conn.SetWriteDeadline(time.Now().Add(wait))
		if _, err := pc.conn.Write(b[n:]); err != nil {
			return false
		}
	}
	return true
}

// parkIdle has the connection wait in the reactor for its next request,
// until pc.due. It returns flowParked, or flowOn with the request's first
// bytes in pc.in (it came meanwhile), or flowDone (hung up, or shutdown).
func (pc *pollConn) parkIdle() flow {
	for {
		if pc.ready.Load() {
			pc.ready.Store(false)
			switch err := pc.readNow(); err {
			case nil:
				return flowOn
			case syscall.EAGAIN:
			default:
				return flowDone
			}
		}
		if pc.shuttingDown() {
			return flowDone // an idle connection closes at shutdown
		}
		pc.setTimer(time.Until(time.Unix(0, pc.due.Load())))
		if pc.parked(stateIdle) {
			return flowParked
		}
	}
}

// readNow reads what the socket has into pc.in, without waiting.
func (pc *pollConn) readNow() error {
	bp := pc.s.pollBufs.Get().(*[]byte)
	n, err := pc.sock.ReadNow((*bp)[:cap(*bp)])
	if err != nil {
		pc.s.pollBufs.Put(bp)
		return err
	}
	pc.mayHaveMore(n, cap(*bp))
	*bp = (*bp)[:n]
	pc.in = bp
	return nil
}

// next reads the connection's next request and serves it if it is a poll:
// answered at once (wait false) or to wait (wait true). Anything else is
// handed back to net/http (flowDone, pc.back set). With nb, a request that
// is not all in the bytes read yet, or that needs more than the reactor
// does, is left in pc.in for a goroutine (flowBlock).
func (pc *pollConn) next(nb bool) (wait bool, f flow) {
	if pc.in == nil && len(pc.pending) == 0 {
		switch {
		case pc.rx != nil && !pc.pipelined:
			if f := pc.parkIdle(); f != flowOn {
				return false, f
			}
		case nb:
			pc.resumeWait = false
			return false, flowBlock
		default:
			pc.pipelined = false
			pc.conn.SetReadDeadline(time.Now().Add(pc.s.cfg.IdleTimeout))
			if pc.shuttingDown() {
				return false, flowDone // an idle connection closes at shutdown
			}
			if err := pc.sock.WaitReadable(); err != nil {
				return false, flowDone
			}
		}
	}
	bp := pc.in
	if bp == nil {
		bp = pc.s.pollBufs.Get().(*[]byte)
	}
	pc.in = nil
	buf := append(*bp, pc.pending...)
	pc.pending, pc.pipelined = nil, false
	kept := false
	defer func() {
		if !kept {
			*bp = (*bp)[:0]
			pc.s.pollBufs.Put(bp)
		}
	}()
	// redo leaves the request's bytes (b) to a goroutine's next.
	redo := func(b []byte) (bool, flow) {
		*bp = b
		pc.in, kept = bp, true
		pc.resumeWait = false
		return false, flowBlock
	}

	// A deadline for the rest of the request, if it is not all here.
	timed := false
	more := func() error {
		if !timed {
			pc.conn.SetReadDeadline(time.Now().Add(headTimeout))
			timed = true
		}
		n, err := pc.conn.Read(buf[len(buf):cap(buf)])
		pc.mayHaveMore(n, cap(buf)-len(buf))
		buf = buf[:len(buf)+n]
		return err
	}
	headLen := -1
	for {
		if headLen = headEnd(buf); headLen >= 0 || len(buf) >= maxPollHead {
			break
		}
		if nb {
			return redo(buf)
		}
		if err := more(); err != nil {
			return false, flowDone // as net/http: a cut head gets no answer
		}
	}
	if headLen < 0 || headLen > maxPollHead {
		pc.back = bytes.Clone(buf) // too big: net/http answers 431
		return false, flowDone
	}
	req, ok := parsePollHead(buf[:headLen])
	if !ok || req.contentLength > pollArgsLimit {
		pc.back = bytes.Clone(buf)
		return false, flowDone
	}
	total := headLen + req.contentLength
	if total > len(buf) && nb {
		return redo(buf)
	}
	if total > cap(buf) {
		buf = slices.Grow(buf, total-len(buf))
	}
	for len(buf) < total {
		if err := more(); err != nil && len(buf) < total {
			return false, flowDone
		}
	}
	pc.req = pollRequest{req, viewString(buf[headLen:total])}
	t, aerr := pc.s.admit.Admit(&pc.req, admit.Poll)
	pc.req = pollRequest{} // it views buf
	if aerr == nil && nb && pc.needsSync(t.Wall, t.Cursor) {
		return redo(buf)
	}
	if len(buf) > total {
		pc.pending = bytes.Clone(buf[total:]) // pipelined: served next
	}
	pc.keepAlive = !req.close
	if aerr != nil {
		return false, pc.answerError(aerr.Status, aerr.Message, nb)
	}
	return pc.start(t.Wall, t.Cursor, nb)
}

// mayHaveMore notes a read of n bytes into room: one that filled it may
// have left bytes in the socket, which the reactor, edge-triggered, will
// not report again. The next wait looks at the socket first (ready).
func (pc *pollConn) mayHaveMore(n, room int) {
	if n == room {
		pc.ready.Store(true)
	}
}

// needsSync reports whether serving a poll of the wall name from cursor
// may have to wait for the broker (Server.sync).
func (pc *pollConn) needsSync(name string, cursor wall.Cursor) bool {
	if pc.wall == nil || pc.wall.Name() != name {
		return true
	}
	return !syncless(pc.wall, cursor)
}

// start sets up a poll read by next, which waitAnswer then answers, or
// answers 503 if the cursor cannot be placed.
func (pc *pollConn) start(name string, cursor wall.Cursor, nb bool) (wait bool, f flow) {
	s := pc.s
	if pc.wall == nil || pc.wall.Name() != name {
		w := s.hub.Acquire(strings.Clone(name)) // name views the read buffer
		if pc.wall != nil {
			if pc.subscribed {
				pc.wall.Unsubscribe(pc)
				pc.subscribed = false
			}
			s.hub.Release(pc.wall)
		}
		pc.wall = w
	}
	if err := s.sync(context.Background(), pc.wall, cursor); err != nil {
		code, msg, _ := errorStatus(err)
		return false, pc.answerError(code, msg, nb)
	}
	pc.cursor = cursor
	pc.deadline = time.Now().Add(s.cfg.PollTimeout)
	return true, flowOn
}

// hookParked runs the test hook where a poll has just been parked.
func (pc *pollConn) hookParked() {
	if h := pc.s.testHookParked; h != nil {
		h()
	}
}
