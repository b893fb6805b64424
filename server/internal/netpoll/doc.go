// Package netpoll is the server's network engine: non-blocking socket I/O
// that never parks a goroutine in the runtime's poller (Socket, Writer),
// an epoll reactor that calls back when a watched socket becomes readable
// (Poller), and a pool of workers that write pending bytes to many
// connections without blocking (Flusher).
//
// It knows no protocol: no HTTP, no WebSocket, no wall. Its callers own
// their connections and decide what a readable socket or a flush means.
//
// A descriptor's lifetime has one rule: the caller that holds a net.Conn
// open is the only one that may use its Socket's bare-descriptor calls
// (Socket.ReadNow, Socket.WriteNow, Socket.Peek), and it must Remove the
// socket from a Poller before closing it or handing it on, since the
// descriptor may then be reused. Calls that go through the RawConn
// (Socket.WaitReadable, Writer.Write) are safe at any time.
package netpoll
