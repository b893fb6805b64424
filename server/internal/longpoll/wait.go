package longpoll

import (
	"errors"
	"os"
	"syscall"
	"time"
	"wall/wall"
)

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
			w, c, deadline, expiring := pc.wall, pc.cursor, pc.pollDeadline(), pc.expiring
			pc.arm(deadline)
			s := pc.set(stateWaiting)
			pc.hookParked()
			res, _ := w.Poll(c)
			if expiring && !time.Now().Before(deadline) {
				res = wall.Result{} // the token is refused by now: the timeout's answer
			}
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
		pc.conn.SetReadDeadline(pc.pollDeadline())
		pc.woken.Store(false)
		select {
		case <-pc.wake:
		default:
		}
		pc.set(stateWaitSlow)
		res, _ := pc.wall.Poll(pc.cursor)
		if pc.expiring && !time.Now().Before(pc.pollDeadline()) {
			res = wall.Result{} // the token is refused by now: the timeout's answer
		}
		if len(res.Messages) == 0 && !pc.shuttingDown() && time.Now().Before(pc.pollDeadline()) {
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
	t := time.NewTimer(time.Until(pc.pollDeadline()))
	defer t.Stop()
	select {
	case <-pc.wake:
	case <-t.C:
	case <-pc.e.done:
	}
	return nil
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
	pc.due.Store(time.Now().Add(pc.e.cfg.IdleTimeout).UnixNano())
}
