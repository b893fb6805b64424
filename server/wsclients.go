package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// wsClients is the set of live WebSocket connections. One keepalive loop
// pings them all, instead of a ticker and a goroutine per connection, and
// tells them all to close at shutdown.
type wsClients struct {
	mu      sync.Mutex
	set     map[*wsClient]struct{}
	closing bool
	live    sync.WaitGroup // entered connections; see Server.Wait
	slow    atomic.Int64   // connections cut off for reading too slowly
}

// enter counts a connection about to be upgraded; false once shutting down.
func (cs *wsClients) enter() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closing {
		return false
	}
	cs.live.Add(1)
	return true
}

// add registers an upgraded connection. A connection that arrives as the
// server closes is told to close at once.
func (cs *wsClients) add(cl *wsClient) {
	cs.mu.Lock()
	closing := cs.closing
	if !closing {
		if cs.set == nil {
			cs.set = make(map[*wsClient]struct{})
		}
		cs.set[cl] = struct{}{}
	}
	cs.mu.Unlock()
	if closing {
		cl.close(websocket.CloseGoingAway, "server shutting down")
	}
}

// leave ends what enter began; cl is nil when the upgrade failed.
func (cs *wsClients) leave(cl *wsClient) {
	if cl != nil {
		cs.mu.Lock()
		delete(cs.set, cl)
		cs.mu.Unlock()
	}
	cs.live.Done()
}

func (cs *wsClients) countSlow() { cs.slow.Add(1) }

// snapshot returns the live connections, so they can be poked without
// holding mu.
func (cs *wsClients) snapshot() []*wsClient {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := make([]*wsClient, 0, len(cs.set))
	for cl := range cs.set {
		out = append(out, cl)
	}
	return out
}

// run pings every connection each period until done is closed, then tells
// every connection to close. It is the Server's keepalive goroutine.
func (cs *wsClients) run(done <-chan struct{}, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for _, cl := range cs.snapshot() {
				cl.keepalive()
			}
		case <-done:
			cs.mu.Lock()
			cs.closing = true
			cs.mu.Unlock()
			for _, cl := range cs.snapshot() {
				cl.close(websocket.CloseGoingAway, "server shutting down")
				// A writer blocked on a peer that stopped reading gives up
				// within closeGrace, so shutdown stays bounded.
				cl.conn.SetWriteDeadline(time.Now().Add(closeGrace))
			}
			return
		}
	}
}
