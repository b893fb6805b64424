package longpoll

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"syscall"
	"time"
	"wall/wall"
)

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
	bp := pc.e.bufs.Get().(*[]byte)
	n, err := pc.sock.ReadNow((*bp)[:cap(*bp)])
	if err != nil {
		pc.e.bufs.Put(bp)
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
			pc.conn.SetReadDeadline(time.Now().Add(pc.e.cfg.IdleTimeout))
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
		bp = pc.e.bufs.Get().(*[]byte)
	}
	pc.in = nil
	buf := append(*bp, pc.pending...)
	pc.pending, pc.pipelined = nil, false
	kept := false
	defer func() {
		if !kept {
			*bp = (*bp)[:0]
			pc.e.bufs.Put(bp)
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
		if headLen = headEnd(buf); headLen >= 0 || len(buf) >= MaxHead {
			break
		}
		if nb {
			return redo(buf)
		}
		if err := more(); err != nil {
			return false, flowDone // as net/http: a cut head gets no answer
		}
	}
	if headLen < 0 || headLen > MaxHead {
		pc.back = bytes.Clone(buf) // too big: net/http answers 431
		return false, flowDone
	}
	req, ok := parsePollHead(buf[:headLen])
	if !ok || req.contentLength > MaxBody {
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
	pr := pc.e.reqs.Get().(*pollRequest)
	*pr = pollRequest{h: req, body: viewString(buf[headLen:total]), peer: pc.peer}
	t, aerr := pc.e.app.Admit(pr)
	*pr = pollRequest{} // it views buf
	pc.e.reqs.Put(pr)
	if aerr == nil && nb && pc.needsSync(t.Wall, t.Cursor) {
		return redo(buf)
	}
	if len(buf) > total {
		pc.pending = bytes.Clone(buf[total:]) // pipelined: served next
	}
	pc.keepAlive = !req.close
	if aerr != nil {
		return false, pc.answerError(aerr, nb)
	}
	pc.hold.Release() // the last poll's, if its answer did not (it does)
	pc.hold = t.Hold
	var expires time.Time
	if !t.Who.Expires.IsZero() { // only a token with exp pays for it
		expires = pc.e.app.RefusedFrom(t)
	}
	return pc.start(t.Wall, t.Cursor, expires, nb)
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
// may have to wait for the broker (App.Sync).
func (pc *pollConn) needsSync(name string, cursor wall.Cursor) bool {
	if pc.wall == nil || pc.wall.Name() != name {
		return true
	}
	return !pc.e.app.Syncless(pc.wall, cursor)
}

// start sets up a poll read by next, which waitAnswer then answers, or
// answers 503 if the cursor cannot be placed. A poll whose token is
// refused from expires (zero: never) before the poll timeout is due then.
func (pc *pollConn) start(name string, cursor wall.Cursor, expires time.Time, nb bool) (wait bool, f flow) {
	e := pc.e
	if pc.wall == nil || pc.wall.Name() != name {
		w := e.app.Acquire(strings.Clone(name)) // name views the read buffer
		if pc.wall != nil {
			if pc.subscribed {
				pc.wall.Unsubscribe(pc)
				pc.subscribed = false
			}
			e.app.Release(pc.wall)
		}
		pc.wall = w
	}
	if err := e.app.Sync(context.Background(), pc.wall, cursor); err != nil {
		return false, pc.answerError(err, nb)
	}
	pc.cursor = cursor
	deadline := time.Now().Add(e.cfg.PollTimeout)
	pc.expiring = !expires.IsZero() && expires.Before(deadline)
	if pc.expiring {
		deadline = expires
	}
	pc.deadline = deadline.UnixNano()
	return true, flowOn
}
