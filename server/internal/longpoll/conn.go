package longpoll

import (
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"
	"wall/server/internal/admit"
	"wall/server/internal/netpoll"
	"wall/wall"
)

// pollConn is a keep-alive connection the engine holds.
//
// One owner at a time serves it (see connState): its goroutine, the
// reactor's, a flusher worker or its timer's. The others touch only woken
// and wake (set by Send and Reset under the wall's lock and by wakeUp,
// which Shutdown calls under the registry's lock, along with a read
// deadline in the past that ends a slow wait), the atomics (st, queued, ready, due, firesAt), and
// timer, which anyone may set to fire sooner: onTimer checks before it
// acts.
type pollConn struct {
	e    *Engine
	ln   *listener
	rx   *netpoll.Poller // watches conn while the engine holds it; nil: polls wait the slow way
	conn net.Conn        // the socket (never a prefixConn)
	sock netpoll.Socket  // conn's descriptor, to wait without a buffer
	// pending holds bytes read from conn but not handled yet: a pipelined
	// request.
	pending []byte
	// back, when not nil, is the request to hand back to net/http.
	back []byte

	wall     *wall.Wall // the current poll's wall, held with App.Acquire
	cursor   wall.Cursor
	deadline int64 // of the current poll, Unix ns (as due)

	wake  chan struct{} // signalled with woken; 1-buffered
	st    atomic.Uint64 // a stamp: state and generation (pollstate.go)
	woken atomic.Bool   // a message, a reset or shutdown came
	// queued: submitted to the flusher and not yet taken.
	queued atomic.Bool
	rest   []byte // an answer's bytes the socket did not take: a goroutine writes them

	// ready is set by the reactor when the socket becomes readable, and
	// cleared by whoever then looks at it: an owner that parks the
	// connection while it is set takes it back.
	ready      atomic.Bool
	retryAfter int32 // the Retry-After of the answer being written (answerError)
	// due is when the wait in the reactor ends (Unix ns): the poll's
	// deadline while it waits for messages, the idle timeout after the
	// answer. timer fires by then and ends the wait, or looks again.
	due     atomic.Int64
	timer   *time.Timer
	firesAt atomic.Int64 // when timer fires (Unix ns), as last set

	peer string     // the client's address (net/http's RemoteAddr), for admission
	hold admit.Hold // the current poll's place among its client's connections, until answered

	// The flags together, and each 4-byte field beside another: a
	// pending poll's memory is mostly this struct, and a field alone
	// would cost a word of padding (TestPollConnSize keeps it in its
	// allocation size class).

	// pipelined is set when the client sent more while a poll waited: the
	// socket stays readable, so the wait can no longer watch it.
	pipelined  bool
	keepAlive  bool
	expiring   bool  // deadline is when the poll's token is refused (App.RefusedFrom)
	subscribed bool  // pc is among wall's subscribers
	failed     bool  // a worker's write failed
	resumeWait bool  // after flowBlock: the goroutine waits for the answer (or reads the next request)
	left       bool  // leave ran (or began): the connection is out of the registry
	answers    uint8 // worker answers, to sample Config.Lag

	// in is a pooled buffer of bytes read and not yet handled: a
	// connection waiting holds no buffer.
	in *[]byte
}

var _ wall.Subscriber = (*pollConn)(nil)

// pollDeadline is when the current poll is answered if nothing comes.
func (pc *pollConn) pollDeadline() time.Time { return time.Unix(0, pc.deadline) }

// Send has the waiting poll answered: by a flusher worker, or by its own
// goroutine, woken. Called under the wall's lock: never blocks.
func (pc *pollConn) Send(*wall.Message) {
	switch pc.stamp().state() {
	case stateWaiting:
		if pc.queued.CompareAndSwap(false, true) && !pc.e.flusher.Submit(pc) {
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
	case <-pc.e.done:
		return true
	default:
		return false
	}
}

// serve is a goroutine serving the connection, from waiting for its
// poll's answer (wait) or from reading its next request, until it is done
// or waits in the reactor.
func (pc *pollConn) serve(wait bool) {
	defer pc.recoverConn()
	if pc.run(wait, false) == flowDone {
		pc.finish()
	}
}

// Readable is the reactor's: the socket has something to read, or hung
// up. A connection waiting in the reactor is served on the reactor's
// goroutine (run, not blocking) until it waits again.
func (pc *pollConn) Readable() {
	defer pc.recoverConn()
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
			go pc.finishOwn() // handBack blocks until net/http takes it
		} else {
			pc.finish()
		}
	}
}

// onTimer runs when a wait in the reactor may be due (or at shutdown): it
// answers a poll whose deadline passed, closes a connection idle too
// long, and otherwise leaves the connection waiting, the timer re-armed.
func (pc *pollConn) onTimer() {
	defer pc.recoverConn()
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
	pc.leave()
}

// finishOwn is finish as the root of a goroutine of its own.
func (pc *pollConn) finishOwn() {
	defer pc.recoverConn()
	pc.finish()
}

// leave is finish once the connection is done.
func (pc *pollConn) leave() {
	pc.left = true
	if pc.timer != nil {
		pc.timer.Stop()
	}
	if pc.rx != nil {
		pc.rx.Remove(pc.sock, pc) // before the descriptor may be reused
	}
	pc.putIn()
	pc.hold.Release() // a poll that ends unanswered
	if pc.wall != nil {
		pc.wall.Unsubscribe(pc)
		pc.e.app.Release(pc.wall)
		pc.wall = nil
	}
	pc.e.conns.Leave(pc) // before the hand-back: see conns.go
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

// recoverConn is deferred at the root of every goroutine that serves the
// connection and of every call into it from the reactor, a timer or a
// flusher worker: a panic there is logged with its stack and ends this
// connection only (abandon). A broken ownership invariant is logged and
// panics on: another goroutine may own the connection, and going on would
// risk answers on the wrong request.
func (pc *pollConn) recoverConn() {
	v := recover()
	if v == nil {
		return
	}
	stack := string(debug.Stack())
	if _, broken := v.(invariantError); broken {
		pc.e.log.Error("long-poll engine: broken ownership invariant, crashing", "panic", v, "stack", stack)
		panic(v)
	}
	pc.e.log.Error("long-poll connection panicked: closing it", "panic", v, "stack", stack)
	pc.abandon()
}

// abandon ends the connection after a panic of its owner, whatever its
// state: it leaves the engine as finish does, and is closed, never handed
// back (its bytes may be half-read). If leaving itself panicked, only the
// socket is closed.
func (pc *pollConn) abandon() {
	pc.st.Store(uint64(pc.stamp().next(stateDone))) // forced: the owner died mid-step
	if pc.left {
		pc.conn.Close()
		return
	}
	pc.back = nil
	pc.leave()
}
