package longpoll

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// pollConns is the set of connections the engine holds. Shutdown wakes
// them all: waiting polls answer, idle connections close.
type pollConns struct {
	mu      sync.Mutex
	set     map[*pollConn]struct{}
	closing bool
	live    sync.WaitGroup // see Engine.Wait

	workerAnswers  atomic.Int64 // polls answered by a flusher worker
	workerHandoffs atomic.Int64 // of which the goroutine wrote the rest
}

// enter registers pc; false once shutting down.
func (ps *pollConns) enter(pc *pollConn) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closing {
		return false
	}
	if ps.set == nil {
		ps.set = make(map[*pollConn]struct{})
	}
	ps.set[pc] = struct{}{}
	ps.live.Add(1)
	return true
}

// attach gives pc its hijacked connection. From then on the shutdown
// closer may wake it; before, the connection sees shutdown through
// App.Done when it first waits.
func (ps *pollConns) attach(pc *pollConn, conn net.Conn) {
	ps.mu.Lock()
	pc.conn = conn
	ps.mu.Unlock()
}

// leave ends what enter began. Once it returns the shutdown closer no
// longer touches pc's connection, which may then go back to net/http.
func (ps *pollConns) leave(pc *pollConn) {
	ps.mu.Lock()
	delete(ps.set, pc)
	ps.mu.Unlock()
	ps.live.Done()
}

// count returns the number of connections held, and of polls among them
// waiting in the reactor.
func (ps *pollConns) count() (n, waiting int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for pc := range ps.set {
		if pc.stamp().state() == stateWaiting {
			waiting++
		}
	}
	return len(ps.set), waiting
}

// closeAll wakes every connection for shutdown; it runs once, on the
// engine's shutdown goroutine, after App.Done is closed. grace bounds the
// writes of the last answers.
func (ps *pollConns) closeAll(grace time.Duration) {
	// Under mu, so that no connection is handed back while it is woken
	// (waking only sets deadlines and signals: it does not block).
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.closing = true
	for pc := range ps.set {
		if pc.conn == nil {
			continue // not attached yet: sees App.Done when it waits
		}
		pc.wakeUp()
		// A write blocked on a client that does not read gives up within
		// grace, so shutdown stays bounded.
		pc.conn.SetWriteDeadline(time.Now().Add(grace))
	}
}
