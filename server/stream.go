package server

import (
	"net"
	"net/http"

	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/server/internal/outbound"
	"wall/wall"
)

// stream is what every streaming connection (WebSocket, event stream)
// holds from its handshake to its end: its session, its wall and its
// place among its client's connections. The transports embed it.
type stream struct {
	s    *Server
	sess *outbound.Session
	wall *wall.Wall
	hold admit.Hold // this connection among its client's, released by finish
}

// openStream is the handshake every streaming transport shares, after
// admission: it registers the connection (before the takeover, while
// http.Server still tracks the request, so Wait cannot miss a connection
// that Shutdown let through), catches the instance up with the cursor,
// and subscribes a new session before takeover answers the handshake,
// with writes held until the connection is attached: a client that has
// its answer gets every message posted after it, even without a cursor.
// takeover answers the handshake and returns the connection, or nil and
// the error to return (nil if it answered itself). On every refusal what
// was taken is given back and the stream returned has no session. A
// token with exp ends the stream with outbound.TokenExpired (the
// session's timer, stopped by finish).
func (s *Server) openStream(c echo.Context, t admit.Ticket, opts *outbound.Options, takeover func() (net.Conn, error)) (stream, error) {
	if !s.streams.Enter() {
		t.Hold.Release()
		return stream{}, echo.NewHTTPError(http.StatusServiceUnavailable, msgDraining)
	}
	w := s.hub.Acquire(t.Wall)
	if herr := s.sync(c.Request().Context(), w, t.Cursor); herr != nil {
		s.hub.Release(w)
		s.streams.Leave(nil)
		t.Hold.Release()
		return stream{}, herr
	}
	sess := outbound.New(opts)
	if at := s.cfg.Identity.RefusedFrom(t.Who); !at.IsZero() {
		// The stream ends when its token would be refused, as a new
		// request with it would be; nothing stored after that goes out.
		sess.Expire(at)
	}
	backlog := w.Subscribe(sess, t.Cursor)
	conn, err := takeover()
	if conn == nil {
		w.Unsubscribe(sess)
		s.hub.Release(w)
		s.streams.Leave(nil)
		t.Hold.Release()
		return stream{}, err
	}
	sess.Attach(conn, backlog)
	s.streams.Add(sess)
	return stream{s: s, sess: sess, wall: w, hold: t.Hold}, nil
}

// finish runs when the connection's reader ends: it stops delivery, ends
// the session and gives back what openStream took.
func (st *stream) finish(r outbound.Reason) {
	st.wall.Unsubscribe(st.sess)
	st.sess.Finish(r)
	st.s.hub.Release(st.wall)
	st.hold.Release()
	st.s.streams.Leave(st.sess)
}
