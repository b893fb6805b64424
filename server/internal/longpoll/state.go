package longpoll

import "fmt"

// connState is where a connection held by the engine is. One owner at a
// time serves a connection: whoever moved it into a busy state (busy or
// claimed). A connection in a waiting state (waitSlow, waiting, idle) is
// owned by its waiting goroutine (waitSlow) or by nobody (waiting, idle):
// whoever moves it out of waiting or idle first, with a compare-and-swap
// on its stamp, owns it until it parks it again.
type connState uint8

const (
	// stateBusy: a goroutine serves it (its own, the reactor's, a
	// timer's, a worker's after a flush); Send ignores it.
	stateBusy connState = iota
	// stateWaitSlow: its own goroutine waits for the answer (wait); Send
	// wakes it. The goroutine stays its owner.
	stateWaitSlow
	// stateWaiting: the poll waits in the reactor, with no goroutine;
	// Send queues it for a flusher worker.
	stateWaiting
	// stateClaimed: a flusher worker is answering its poll.
	stateClaimed
	// stateIdle: answered, it waits in the reactor for its next request.
	stateIdle
	// stateDone: it has left the engine.
	stateDone
	numStates
)

var stateNames = [numStates]string{"busy", "wait-slow", "waiting", "claimed", "idle", "done"}

func (s connState) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("connState(%d)", s)
}

// transitions[from][to] allows a change of state, and says who makes it.
//
//	busy → wait-slow   its goroutine waits the slow way (waitAnswer)
//	busy → waiting     its owner parks a poll in the reactor (waitAnswer)
//	busy → idle        its owner, after an answer, parks it for the next request (parked)
//	busy → done        its owner finishes it (finish)
//	wait-slow → busy   its goroutine, woken (leaveSlow)
//	waiting → busy     the reactor (readable), the timer (due), or the owner that parked it, taking back that very poll (its stamp)
//	waiting → claimed  a flusher worker, to answer it (Flush)
//	claimed → waiting  the worker: no message after the cursor after all
//	claimed → idle     the worker, once its answer is written whole
//	claimed → busy     the worker, handing the rest to a goroutine (afterFlush)
//	idle → busy        the reactor (the next request came), the timer (idle too long), or the owner that parked it
var transitions = [numStates][numStates]bool{
	stateBusy:     {stateWaitSlow: true, stateWaiting: true, stateIdle: true, stateDone: true},
	stateWaitSlow: {stateBusy: true},
	stateWaiting:  {stateBusy: true, stateClaimed: true},
	stateClaimed:  {stateWaiting: true, stateIdle: true, stateBusy: true},
	stateIdle:     {stateBusy: true},
}

// stamp is a connection's state with its generation, which every change
// increments. A compare-and-swap against a stamp succeeds only if nothing
// changed since it was read: an owner that parked a poll can take back
// that poll only, never the next request that another owner parked in the
// meantime (the keep-alive race: k's answer written for k+1).
type stamp uint64

func (s stamp) state() connState { return connState(s & 0xff) }

// next is s changed to state to, one generation on.
func (s stamp) next(to connState) stamp { return (s&^0xff + 1<<8) | stamp(to) }

func (s stamp) String() string { return fmt.Sprintf("%v#%d", s.state(), s>>8) }

// stamp returns the connection's current stamp.
func (pc *pollConn) stamp() stamp { return stamp(pc.st.Load()) }

// change moves the connection from old, a stamp its caller read, to state
// to, and returns the new stamp; ok is false when the connection changed
// since old was read (someone else owns it now). Every change of state
// goes through change.
func (pc *pollConn) change(old stamp, to connState) (s stamp, ok bool) {
	if !transitions[old.state()][to] {
		panic(invariantError(fmt.Sprintf("pollConn: no transition %v → %v", old.state(), to)))
	}
	s = old.next(to)
	return s, pc.st.CompareAndSwap(uint64(old), uint64(s))
}

// set moves the connection to state to on behalf of its owner: nobody
// else changes a connection in a busy state, so a failure is a broken
// invariant, and unsafe to go on from.
func (pc *pollConn) set(to connState) stamp {
	old := pc.stamp()
	s, ok := pc.change(old, to)
	if !ok {
		panic(invariantError(fmt.Sprintf("pollConn: %v changed under its owner (moving to %v)", old, to)))
	}
	return s
}

// invariantError is the panic of a broken ownership rule: two goroutines
// may hold the connection, so it is not recovered (recoverConn).
type invariantError string

func (e invariantError) Error() string { return string(e) }

// take moves the connection out of a waiting state (one of from) into
// busy for the caller: the reactor, the timer. It returns the state it
// took it from, or false if the connection is in none of them.
func (pc *pollConn) take(from ...connState) (connState, bool) {
	for {
		old := pc.stamp()
		st := old.state()
		found := false
		for _, f := range from {
			found = found || f == st
		}
		if !found {
			return st, false
		}
		if _, ok := pc.change(old, stateBusy); ok {
			return st, true
		}
	}
}

// flow says how serving a connection goes on after a step.
type flow uint8

const (
	flowOn     flow = iota // go on with the next step
	flowDone               // the connection is done: finish it
	flowParked             // it waits in the reactor, or a worker has it: the caller lets go
	flowBlock              // (reactor only) the next step would block: a goroutine goes on (resumeWait)
)

var flowNames = [...]string{"on", "done", "parked", "block"}

func (f flow) String() string {
	if int(f) < len(flowNames) {
		return flowNames[f]
	}
	return fmt.Sprintf("flow(%d)", f)
}
