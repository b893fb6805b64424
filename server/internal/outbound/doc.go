// Package outbound is the transport-neutral half of a streaming
// connection: a Session queues a wall's messages and other frames for one
// peer and writes them, and a Registry holds every such connection for
// keepalive, counts and shutdown.
//
// A transport (WebSocket today, server-sent events next) is an Encoder,
// which says how a message, a notice, a ping and a final frame look on its
// wire, plus a handler that admits the request, subscribes the session to
// its wall and runs the connection's reader. Everything else is here: the
// capped queue and the slow-reader cut-off, the bound on frames that are
// not messages, non-blocking writes by netpoll.Flusher workers with a
// blocking writer of the session's own as the fallback, pings spread over
// the period, close and shutdown, and why each connection ended (Reason).
package outbound
