package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"wall/wall"
)

// The long-poll engine. A poll that has to wait leaves net/http: its
// connection is hijacked and becomes a pollConn, served by one goroutine
// with a shallow stack and no buffers while it waits, instead of net/http's
// connection goroutine, its background reader, its bufio reader and writer,
// its response buffer, the request and echo's context. After the answer
// the same goroutine reads the next request on the connection (keep-alive
// re-polls) and serves it if it is a poll; anything else goes back to
// net/http through the Server's listener (listener.go), with the bytes
// already read, so net/http and echo serve it exactly as before.
//
// A keep-alive poll on a socket waits the fast way (waitAnswer, read,
// settle): its goroutine parks reading the socket, and a message hands the
// connection to a flusher worker, which answers it with one non-blocking
// write (flush). The client's next request then wakes the goroutine, so
// one park, one read and one write serve a whole poll, with no timer
// reset and no wake-up in between. Other polls (pipelined requests,
// Connection: close) wait the slow way (wait): the goroutine is woken to
// answer.
//
// Measured with ../shared/wallbench on a 2-core box: a pending long-poll
// costs 5.5 KiB RSS at 10k instead of 20.95 KiB (net/http); see the README
// for the CPU per delivery.

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

// States of a pollConn's poll (pollConn.state).
const (
	psBusy     int32 = iota // the serve goroutine has it; Send ignores it
	psWaitSlow              // waiting in wait: Send wakes the goroutine
	psWaiting               // waiting on its socket: Send queues it for a worker
	psClaimed               // a flusher worker is answering it
	psAnswered              // a worker answered it (see rest and failed)
)

// pollConn is a keep-alive connection the engine holds.
//
// Its serve goroutine owns it, but for these: woken and wake, which Send
// and Reset (under the wall's lock) and wakeUp (the shutdown closer) set,
// along with a read deadline in the past that ends a wait on the socket;
// and state and queued, through which a flusher worker takes a waiting
// poll (psWaiting to psClaimed), answers it and gives it back
// (psAnswered). While a worker has the poll, the fields it uses (wall,
// cursor, keepAlive, rest, failed) are the worker's.
type pollConn struct {
	s    *Server
	ln   *listener
	conn net.Conn        // the socket (never a prefixConn)
	raw  syscall.RawConn // conn's descriptor, to wait without a buffer
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

	state      atomic.Int32 // psBusy...
	queued     atomic.Bool  // submitted to the flusher and not yet taken
	subscribed bool         // pc is among wall's subscribers
	rest       []byte       // what the worker's write left for the goroutine
	failed     bool         // the worker's write failed

	// in is a pooled buffer of bytes read and not yet handled, filled by
	// readFD (errors in readErr) when the socket has data: a connection
	// waiting on its socket holds no buffer.
	in      *[]byte
	readErr error
	readFn  func(fd uintptr) bool // readFD, made once
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
	if sc, ok := conn.(syscall.Conn); ok {
		pc.raw, _ = sc.SyscallConn()
	}
	s.polls.attach(pc, conn)
	pc.wall = s.hub.Acquire(w.Name()) // the caller's hold keeps it the same wall
	pc.cursor, pc.deadline, pc.keepAlive = cursor, deadline, !r.Close
	go pc.serve()
	return true
}

// Send has the waiting poll answered: by a flusher worker, or by its own
// goroutine, woken. Called under the wall's lock: never blocks.
func (pc *pollConn) Send(*wall.Message) {
	switch pc.state.Load() {
	case psWaiting:
		if pc.queued.CompareAndSwap(false, true) && !pc.s.flusher.submit(pc) {
			go pc.flush(nil, new(rawWriter)) // the queue is full
		}
	case psWaitSlow:
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

// serve is the connection's goroutine: it answers the poll it was created
// for, then serves the connection's next requests until it closes or is
// handed back.
func (pc *pollConn) serve() {
	defer pc.finish()
	park := true
	for {
		if park && !pc.waitAnswer() {
			return
		}
		if !pc.keepAlive {
			return
		}
		var ok bool
		if park, ok = pc.next(); !ok {
			return
		}
	}
}

// finish ends the connection's time in the engine: it lets go of the wall,
// then hands the connection back to net/http or closes it.
func (pc *pollConn) finish() {
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

// waitAnswer waits for messages after the cursor, the poll deadline or
// shutdown, and answers (or has a flusher worker answer). It returns false
// when the connection is done: the client hung up or the answer could not
// be written.
func (pc *pollConn) waitAnswer() bool {
	w := pc.wall
	for {
		fast := fastWait && pc.keepAlive && pc.raw != nil && len(pc.pending) == 0 && !pc.pipelined
		// The deadline first, then the waiting state, then poll: a message
		// after that state is set reaches Send, so none is missed; shutdown
		// is checked after the deadline is set for the same reason.
		pc.conn.SetReadDeadline(pc.deadline)
		if !pc.subscribed {
			w.Subscribe(pc, wall.Cursor{})
			pc.subscribed = true
		}
		if fast {
			pc.state.Store(psWaiting)
		} else {
			pc.woken.Store(false)
			select {
			case <-pc.wake:
			default:
			}
			pc.state.Store(psWaitSlow)
		}
		res, _ := w.Poll(pc.cursor)
		due := len(res.Messages) > 0 || pc.shuttingDown() || !time.Now().Before(pc.deadline)
		if fast {
			if due && pc.state.CompareAndSwap(psWaiting, psBusy) {
				return pc.answerNow(res)
			}
			var err error
			if !due {
				err = pc.read()
			}
			// Woken, or a worker took the poll as it came due.
			ok, again := pc.settle(err)
			if again {
				continue
			}
			return ok
		}
		if !due {
			err := pc.wait()
			pc.leaveSlow()
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return false // the client hung up: write nothing, as Tornado
			}
			continue
		}
		pc.leaveSlow()
		return pc.answerNow(res)
	}
}

// answerNow answers with res, or without messages if it has none.
func (pc *pollConn) answerNow(res wall.Result) bool {
	if len(res.Messages) > 0 {
		return pc.answerPoll(res)
	}
	return pc.answerTimeout()
}

// leaveSlow ends a slow wait. Unsubscribing under the wall's lock
// guarantees no Send still signals (and so sets a deadline) afterwards.
func (pc *pollConn) leaveSlow() {
	pc.wall.Unsubscribe(pc)
	pc.subscribed = false
	pc.state.Store(psBusy)
}

// settle ends a fast wait, after the goroutine's read returned err (or was
// not made). again says the poll is still to be answered; otherwise ok is
// what waitAnswer returns.
func (pc *pollConn) settle(err error) (ok, again bool) {
	if !pc.takeBack() {
		switch {
		case pc.in != nil:
			// The client sent more while its poll waited: it is read
			// after the answer, and the wait no longer watches the socket
			// (as net/http).
			pc.pending = append(pc.pending, *pc.in...)
			pc.putIn()
			pc.pipelined = true
			return true, true
		case err == nil || errors.Is(err, os.ErrDeadlineExceeded):
			return true, true
		}
		return false, false // the client hung up: write nothing, as Tornado
	}
	// A worker answered; what it read, if anything, is the next request.
	switch {
	case pc.failed:
		return false, false
	case pc.rest != nil:
		rest := pc.rest
		pc.rest = nil
		if !pc.write(rest) {
			return false, false
		}
	}
	if pc.in == nil && err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return false, false // hung up after the answer
	}
	return true, false
}

// takeBack gives the poll back to the goroutine after a fast wait and
// reports whether a worker answered it. A worker that has claimed it is
// waited out: it is between a Poll and a non-blocking write.
func (pc *pollConn) takeBack() (answered bool) {
	for i := 0; ; i++ {
		switch {
		case pc.state.CompareAndSwap(psWaiting, psBusy):
			return false
		case pc.state.CompareAndSwap(psAnswered, psBusy):
			return true
		}
		if i < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// flush answers a poll waiting the fast way, on a flusher worker: the
// client is answered with one non-blocking write, and its goroutine wakes
// only when the client's next request comes. Should the socket not take
// the whole answer, or the connection have to close, the goroutine is
// woken (a read deadline in the past) to finish.
func (pc *pollConn) flush(scratch *net.Buffers, w *rawWriter) {
	pc.queued.Store(false)
	if !pc.state.CompareAndSwap(psWaiting, psClaimed) {
		return // the goroutine has it, or another worker answered
	}
	res, _ := pc.wall.Poll(pc.cursor)
	for len(res.Messages) == 0 {
		// Nothing after the cursor yet (a cursor ahead of this instance's
		// wall): wait on. A Send after the store queues the poll again.
		pc.state.Store(psWaiting)
		if res, _ = pc.wall.Poll(pc.cursor); len(res.Messages) == 0 || !pc.state.CompareAndSwap(psWaiting, psClaimed) {
			return
		}
	}
	if pc.shuttingDown() {
		pc.keepAlive = false
	}
	if scratch == nil {
		scratch = new(net.Buffers)
	}
	bp := pc.s.pollBufs.Get().(*[]byte)
	full := appendPollResponse((*bp)[:respReserve], res)
	b := pc.response(full)
	bufs := append((*scratch)[:0], b)
	n, err := w.write(pc.raw, bufs)
	clear(bufs)
	*scratch = bufs
	pc.rest, pc.failed = nil, err != nil
	if err == nil && n < len(b) {
		pc.rest = bytes.Clone(b[n:])
		pc.s.polls.workerHandoffs.Add(1)
	}
	pc.s.polls.workerAnswers.Add(1)
	pc.putBuf(bp, full)
	if pc.failed || pc.rest != nil || !pc.keepAlive {
		// Before the store: once the goroutine has the connection back,
		// a deadline set here would cut its next read.
		pc.conn.SetReadDeadline(time.Now())
	}
	pc.state.Store(psAnswered)
}

// read waits for the client to send something and reads it into pc.in.
func (pc *pollConn) read() error {
	if pc.readFn == nil {
		pc.readFn = pc.readFD
	}
	err := pc.raw.Read(pc.readFn)
	if err == nil {
		err = pc.readErr
	}
	pc.readErr = nil
	return err
}

// readFD is read's callback for RawConn.Read: one non-blocking read into
// a pooled buffer, given back if there is nothing to read yet.
func (pc *pollConn) readFD(fd uintptr) bool {
	bp := pc.s.pollBufs.Get().(*[]byte)
	b := (*bp)[:cap(*bp)]
	for {
		n, err := rawRead(fd, b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			pc.s.pollBufs.Put(bp)
			return false // wait for the poller
		case err != nil:
			pc.readErr = err
		case n == 0:
			pc.readErr = io.EOF
		default:
			*bp = b[:n]
			pc.in = bp
			return true
		}
		pc.s.pollBufs.Put(bp)
		return true
	}
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
		err := waitReadable(pc.raw)
		if err != nil || pc.raw == nil {
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

func (pc *pollConn) answerPoll(res wall.Result) bool {
	bp := pc.s.pollBufs.Get().(*[]byte)
	b := appendPollResponse((*bp)[:respReserve], res)
	ok := pc.answer(b)
	pc.putBuf(bp, b)
	return ok
}

func (pc *pollConn) answerTimeout() bool {
	bp := pc.s.pollBufs.Get().(*[]byte)
	b := append((*bp)[:respReserve], timeoutResponse(pc.cursor)...)
	ok := pc.answer(b)
	pc.putBuf(bp, b)
	return ok
}

// answer writes a 200 response whose body follows the respReserve bytes
// reserved at the start of b.
func (pc *pollConn) answer(b []byte) bool {
	if pc.shuttingDown() {
		pc.keepAlive = false // as net/http does during Shutdown
	}
	return pc.write(pc.response(b))
}

// response writes the head of a 200 response right-aligned into the
// respReserve bytes reserved at the start of b, whose body follows, and
// returns head and body: they go out in one write.
func (pc *pollConn) response(b []byte) []byte {
	var hb [respReserve]byte
	h := append(hb[:0], "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: "...)
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
	n, err := tryWrite(pc.raw, net.Buffers{b})
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

// next reads the connection's next request and serves it if it is a poll:
// answered at once (park false) or to wait (park true). Anything else is
// handed back to net/http (ok false, pc.back set). ok is false too when the
// connection is done.
func (pc *pollConn) next() (park, ok bool) {
	if pc.in == nil && len(pc.pending) == 0 {
		pc.pipelined = false
		pc.conn.SetReadDeadline(time.Now().Add(pc.s.cfg.IdleTimeout))
		if pc.shuttingDown() {
			return false, false // an idle connection closes at shutdown
		}
		if fastWait && pc.raw != nil {
			if pc.read() != nil {
				return false, false // hung up, idle too long, or shutdown
			}
		} else if err := waitReadable(pc.raw); err != nil {
			return false, false
		}
	}
	bp := pc.in
	if bp == nil {
		bp = pc.s.pollBufs.Get().(*[]byte)
	}
	pc.in = nil
	defer pc.s.pollBufs.Put(bp)
	buf := append(*bp, pc.pending...)
	pc.pending, pc.pipelined = nil, false
	*bp = buf[:0]

	// A deadline for the rest of the request, if it is not all here.
	timed := false
	more := func() error {
		if !timed {
			pc.conn.SetReadDeadline(time.Now().Add(headTimeout))
			timed = true
		}
		n, err := pc.conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		return err
	}
	headLen := -1
	for {
		if headLen = headEnd(buf); headLen >= 0 || len(buf) >= maxPollHead {
			break
		}
		if err := more(); err != nil {
			return false, false // as net/http: a cut head gets no answer
		}
	}
	if headLen < 0 || headLen > maxPollHead {
		pc.back = bytes.Clone(buf) // too big: net/http answers 431
		return false, false
	}
	req, ok := parsePollHead(buf[:headLen])
	if !ok || req.contentLength > pollArgsLimit {
		pc.back = bytes.Clone(buf)
		return false, false
	}
	total := headLen + req.contentLength
	if total > cap(buf) {
		buf = slices.Grow(buf, total-len(buf))
	}
	for len(buf) < total {
		if err := more(); err != nil && len(buf) < total {
			return false, false
		}
	}
	if len(buf) > total {
		pc.pending = bytes.Clone(buf[total:])
	}
	name, cursor, ok := req.pollArgs(buf[headLen:total])
	if !ok {
		pc.giveBack(buf[:total])
		return false, false
	}
	return pc.start(name, cursor, req.close, buf[:total])
}

// giveBack has net/http serve req (and what followed it), to answer it
// with an error.
func (pc *pollConn) giveBack(req []byte) {
	pc.back = append(bytes.Clone(req), pc.pending...)
}

// start sets up a poll read by next (req) and answers it if it can at
// once.
func (pc *pollConn) start(name string, cursor wall.Cursor, close bool, req []byte) (park, ok bool) {
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
	if s.sync(context.Background(), pc.wall, cursor) != nil {
		pc.giveBack(req) // net/http tries again, and answers 503
		return false, false
	}
	pc.cursor, pc.keepAlive = cursor, !close
	pc.deadline = time.Now().Add(s.cfg.PollTimeout)
	if res, _ := pc.wall.Poll(cursor); len(res.Messages) > 0 {
		return false, pc.answerPoll(res)
	}
	return true, true
}
