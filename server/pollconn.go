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
// Measured with ../shared/wallbench on a 2-core box: a pending long-poll
// costs 5.5 KiB RSS at 10k instead of 20.95 KiB; 1k pollers re-polling at
// 10 posts/s cost 27-32 server CPU-s per 1M deliveries instead of 42-45.
// Most of what is left is the kernel: the answer's write on loopback alone
// is about 7 µs per delivery.

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
// Everything but woken and wake is owned by its serve goroutine. Send and
// Reset are called under the wall's lock, and wakeUp by the shutdown
// closer: they only set woken, signal wake and set a read deadline in the
// past, which ends the serve goroutine's waitReadable.
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

// Send wakes the waiting poll. Called under the wall's lock: never blocks.
func (pc *pollConn) Send(*wall.Message) {
	if pc.woken.CompareAndSwap(false, true) {
		pc.signal()
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
// shutdown, and answers. It returns false when the connection is done: the
// client hung up or the answer could not be written.
func (pc *pollConn) waitAnswer() bool {
	w := pc.wall
	for {
		pc.woken.Store(false)
		select {
		case <-pc.wake:
		default:
		}
		// The deadline first, then subscribe, then poll: a message after
		// Subscribe moves the deadline to the past and wakes the wait, so
		// none is missed; shutdown is checked after the deadline is set
		// for the same reason.
		pc.conn.SetReadDeadline(pc.deadline)
		w.Subscribe(pc, wall.Cursor{})
		res, _ := w.Poll(pc.cursor)
		if len(res.Messages) > 0 {
			w.Unsubscribe(pc)
			return pc.answerPoll(res)
		}
		if pc.shuttingDown() || !time.Now().Before(pc.deadline) {
			w.Unsubscribe(pc)
			return pc.answerTimeout()
		}
		err := pc.wait()
		w.Unsubscribe(pc)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return false // the client hung up: write nothing, as Tornado
		}
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
	if cap(b) <= 256<<10 {
		*bp = b[:0]
		pc.s.pollBufs.Put(bp)
	}
	return ok
}

func (pc *pollConn) answerTimeout() bool {
	bp := pc.s.pollBufs.Get().(*[]byte)
	b := append((*bp)[:respReserve], timeoutResponse(pc.cursor)...)
	ok := pc.answer(b)
	*bp = b[:0]
	pc.s.pollBufs.Put(bp)
	return ok
}

// answer writes a 200 response whose body follows the respReserve bytes
// reserved at the start of b: the head is written right-aligned into that
// room, so head and body go out in one write.
func (pc *pollConn) answer(b []byte) bool {
	if pc.shuttingDown() {
		pc.keepAlive = false // as net/http does during Shutdown
	}
	var hb [respReserve]byte
	h := append(hb[:0], "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: "...)
	h = strconv.AppendInt(h, int64(len(b)-respReserve), 10)
	if !pc.keepAlive {
		h = append(h, "\r\nConnection: close"...)
	}
	h = append(h, "\r\n\r\n"...)
	start := respReserve - len(h)
	copy(b[start:], h)
	return pc.write(b[start:])
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
	if len(pc.pending) == 0 {
		pc.pipelined = false
		pc.conn.SetReadDeadline(time.Now().Add(pc.s.cfg.IdleTimeout))
		if pc.shuttingDown() {
			return false, false // an idle connection closes at shutdown
		}
		if err := waitReadable(pc.raw); err != nil {
			return false, false // hung up, idle too long, or shutdown
		}
	}
	bp := pc.s.pollBufs.Get().(*[]byte)
	defer pc.s.pollBufs.Put(bp)
	buf := append((*bp)[:0], pc.pending...)
	pc.pending, pc.pipelined = nil, false
	*bp = buf[:0]

	pc.conn.SetReadDeadline(time.Now().Add(headTimeout))
	headLen := -1
	for {
		if headLen = headEnd(buf); headLen >= 0 || len(buf) >= maxPollHead {
			break
		}
		n, err := pc.conn.Read(buf[len(buf):maxPollHead])
		buf = buf[:len(buf)+n]
		if err != nil {
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
		n, err := pc.conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < total {
			return false, false
		}
	}
	if len(buf) > total {
		pc.pending = bytes.Clone(buf[total:])
	}
	name, cursor, ok := req.pollArgs(buf[headLen:total])
	if !ok {
		pc.back = bytes.Clone(buf[:total])
		if len(pc.pending) > 0 {
			pc.back = append(pc.back, pc.pending...)
		}
		return false, false
	}
	return pc.start(name, cursor, req.close)
}

// start sets up a poll read by next and answers it if it can at once.
func (pc *pollConn) start(name string, cursor wall.Cursor, close bool) (park, ok bool) {
	s := pc.s
	if pc.wall == nil || pc.wall.Name() != name {
		w := s.hub.Acquire(name)
		if pc.wall != nil {
			s.hub.Release(pc.wall)
		}
		pc.wall = w
	}
	s.sync(context.Background(), pc.wall, cursor)
	pc.cursor, pc.keepAlive = cursor, !close
	pc.deadline = time.Now().Add(s.cfg.PollTimeout)
	if res, _ := pc.wall.Poll(cursor); len(res.Messages) > 0 {
		return false, pc.answerPoll(res)
	}
	return true, true
}
