package longpoll

import (
	"time"

	"wall/server/internal/outbound"
)

// Transport names the engine's connections in the registry's counts.
const Transport = "longpoll"

// The engine's connections are members of the server's registry of held
// connections (outbound.Registry), with its WebSocket sessions: it
// counts them, tells them all at shutdown, and Server.Wait waits for
// them through it. Their order is:
//
//   - Enter, in Park, while http.Server still tracks the request, so
//     that Wait cannot miss a connection that Shutdown let through;
//   - Add, once pc.conn is set (the hijacked connection): from then on
//     Shutdown may wake it; before, it is not in the registry and sees
//     shutdown through App.Done when it first waits. Add wakes at once a
//     connection that arrives as shutdown has begun;
//   - Leave, in leave, before the connection is handed back to net/http
//     or closed: Shutdown runs under the registry's lock, so once Leave
//     returns nothing wakes it any more, and no connection is handed
//     back while it is woken.
var _ outbound.Member = (*pollConn)(nil)

// Transport names the connection's transport, for the registry's counts.
func (*pollConn) Transport() string { return Transport }

// Keepalive does nothing: a poll is answered within PollTimeout and an
// idle connection closes after IdleTimeout, so neither needs a ping.
func (*pollConn) Keepalive() {}

// Shutdown wakes the connection for shutdown, whatever it is doing:
// waiting polls answer, idle connections close. The registry calls it
// once, under its lock (it only sets deadlines and signals), after
// App.Done is closed.
func (pc *pollConn) Shutdown() {
	pc.wakeUp()
	// A write blocked on a client that does not read gives up within
	// CloseGrace, so shutdown stays bounded.
	pc.conn.SetWriteDeadline(time.Now().Add(pc.e.cfg.CloseGrace))
}

// waitingPolls returns the number of the engine's connections whose poll
// waits in the reactor.
func (e *Engine) waitingPolls() int {
	n := 0
	e.conns.Each(func(m outbound.Member) {
		if pc, ok := m.(*pollConn); ok && pc.e == e && pc.stamp().state() == stateWaiting {
			n++
		}
	})
	return n
}
