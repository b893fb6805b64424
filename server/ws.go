package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/server/internal/outbound"
)

// WebSocket deadlines and limits.
const (
	writeWait       = 10 * time.Second // every write must finish within this
	closeGrace      = 2 * time.Second  // how long to wait for the peer's close reply
	sendQueueMax    = 256              // queued messages before a reader counts as slow
	notesMax        = 64               // queued pongs and error frames before a peer counts as flooding
	frameOverhead   = 1024             // JSON framing around a body
	closeSlowReason = "too slow: reconnect and resume from your cursor"
)

// newUpgrader builds the upgrader. Compression is off: every frame is
// pre-encoded once for all readers, and idle connections must be cheap.
func (s *Server) newUpgrader() websocket.Upgrader {
	return websocket.Upgrader{
		// Zero sizes make gorilla reuse net/http's hijacked buffers for the
		// handshake; its Conn is dropped right after (see wsconn.go).
		CheckOrigin: s.checkOrigin,
	}
}

// checkOrigin allows handshakes without Origin (non-browser clients), from
// the page's own host, and from the configured origins.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err == nil && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// handleWS serves /ws and /chatsocket: arguments wall and cursor in the
// query string. With a cursor the messages after it are sent first, then
// live messages, with nothing lost or repeated in between.
//
// The handler returns right after the upgrade: the connection is served by
// a reader goroutine of its own (with a small stack, unlike net/http's
// connection goroutine that ran the middleware) and a writer goroutine
// that exists only while there is something to write.
func (s *Server) handleWS(c echo.Context) error {
	_, t, err := s.admitHTTP(c, admit.Socket, 0)
	if err != nil {
		return err
	}
	name, cursor := t.Wall, t.Cursor
	// Registered before the upgrade, while http.Server still tracks the
	// request, so Wait cannot miss a connection that Shutdown let through.
	if !s.streams.Enter() {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "server shutting down")
	}
	// Subscribed before the handshake is answered, with writes held until
	// the connection is attached: a client that has its 101 gets every
	// message posted after it, even without a cursor.
	w := s.hub.Acquire(name)
	if herr := s.sync(c.Request().Context(), w, cursor); herr != nil {
		s.hub.Release(w)
		s.streams.Leave(nil)
		return herr
	}
	sess := outbound.New(s.wsOpts)
	backlog := w.Subscribe(sess, cursor)
	conn, err := s.upgrader.Upgrade(c.Response(), c.Request(), nil)
	if err != nil {
		w.Unsubscribe(sess)
		s.hub.Release(w)
		s.streams.Leave(nil)
		return nil // the upgrader has answered (400/403)
	}
	// From here on gorilla's Conn is not used: see wsconn.go.
	sess.Attach(conn.NetConn(), backlog)
	s.streams.Add(sess)
	go (&wsConn{s: s, sess: sess, wall: w}).readPump()
	return nil
}

// wsPost is a client's frame: {"body": "..."}; other keys are ignored.
type wsPost struct {
	Body *json.RawMessage `json:"body"`
}

// post publishes one frame's body and returns the error to report, if any.
func (c *wsConn) post(data []byte) string {
	if !utf8.Valid(data) { // a binary frame; text frames were checked
		return "Invalid unicode in body"
	}
	var p wsPost
	if err := json.Unmarshal(data, &p); err != nil {
		return `frame must be a JSON object like {"body": "text"}`
	}
	var raw string
	if p.Body == nil || json.Unmarshal(*p.Body, &raw) != nil {
		return `frame needs a string "body"`
	}
	body, herr := c.s.cleanBody(raw)
	if herr != nil {
		return herr.Message.(string)
	}
	if _, herr := c.s.publish(context.Background(), c.wall.Name(), body); herr != nil {
		return herr.Message.(string)
	}
	return ""
}
