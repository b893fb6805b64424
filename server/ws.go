package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"wall/wall"
)

// WebSocket deadlines and limits.
const (
	writeWait       = 10 * time.Second  // every write must finish within this
	pongWait        = 60 * time.Second  // a peer silent this long is gone
	pingPeriod      = pongWait * 9 / 10 // pings keep pongs coming before pongWait
	closeGrace      = 2 * time.Second   // how long to wait for the peer's close reply
	sendQueueMax    = 256               // queued messages before a reader counts as slow
	frameOverhead   = 1024              // JSON framing around a body
	closeSlowReason = "too slow: reconnect and resume from your cursor"
)

// newUpgrader builds the upgrader: small read buffers and pooled write
// buffers keep an idle connection cheap; compression is off because every
// frame is pre-encoded once for all readers.
func (s *Server) newUpgrader() websocket.Upgrader {
	return websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     s.checkOrigin,
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
func (s *Server) handleWS(c echo.Context) error {
	q := c.Request().URL.Query()
	name := q.Get("wall")
	if name == "" {
		name = wall.DefaultWall
	} else if !wall.ValidName(name) {
		return echo.NewHTTPError(http.StatusBadRequest, wall.ErrBadName.Error())
	}
	cursor, err := wall.ParseCursor(q.Get("cursor"))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}

	// Counted before the upgrade, while http.Server still tracks the
	// request, so Wait cannot miss a connection that Shutdown let through.
	s.conns.Add(1)
	defer s.conns.Done()
	select {
	case <-s.hub.Done():
		return echo.NewHTTPError(http.StatusServiceUnavailable, "server shutting down")
	default:
	}

	conn, err := s.upgrader.Upgrade(c.Response(), c.Request(), nil)
	if err != nil {
		return nil // the upgrader has answered (400/403)
	}
	w := s.hub.Acquire(name)
	defer s.hub.Release(w)
	s.sync(c.Request().Context(), w, cursor)

	cl := &wsClient{s: s, conn: conn, wall: w, wake: make(chan struct{}, 1), readDone: make(chan struct{})}
	backlog := w.Subscribe(cl, cursor)
	defer w.Unsubscribe(cl)

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		cl.writePump(backlog)
	}()
	cl.readPump()
	close(cl.readDone)
	<-writerDone // no writer outlives its connection
	return nil
}

// wsClient is one WebSocket connection subscribed to one wall.
type wsClient struct {
	s    *Server
	conn *websocket.Conn
	wall *wall.Wall

	mu    sync.Mutex
	queue []*wall.Message // live messages not yet written
	notes [][]byte        // error frames from the reader, not yet written
	slow  bool            // the queue overflowed: cut the connection
	wake  chan struct{}   // capacity 1: "the queue has something"
	spare []*wall.Message // the writer's drained queue, reused

	readDone chan struct{} // closed when readPump has returned
}

// Send queues m for the writer. It runs under the wall's lock, so it only
// appends: a reader that falls sendQueueMax messages behind is marked slow
// and cut off rather than waited on.
func (cl *wsClient) Send(m *wall.Message) {
	cl.mu.Lock()
	switch {
	case cl.slow:
	case len(cl.queue) >= sendQueueMax:
		cl.slow = true
		cl.queue = nil
		// A writer blocked on the stalled peer would otherwise hold the
		// connection until writeWait; fail its write now. A deadline is
		// safe to set from any goroutine, and the writer sets its own
		// before every later write.
		cl.conn.NetConn().SetWriteDeadline(time.Now())
	default:
		cl.queue = append(cl.queue, m)
	}
	cl.mu.Unlock()
	cl.signal()
}

func (cl *wsClient) signal() {
	select {
	case cl.wake <- struct{}{}:
	default:
	}
}

// note queues an error frame for the client; called by the reader.
func (cl *wsClient) note(msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	cl.mu.Lock()
	cl.notes = append(cl.notes, b)
	cl.mu.Unlock()
	cl.signal()
}

// writePump is the only goroutine that writes data frames to the
// connection. It sends the catch-up first, then live messages and pings,
// and on shutdown a close frame.
func (cl *wsClient) writePump(backlog wall.Result) {
	defer cl.conn.Close() // unblocks readPump
	ticker := time.NewTicker(pingPeriod)
	defer ticker.Stop()

	if backlog.Missed > 0 || backlog.Reset {
		b, _ := json.Marshal(struct {
			Missed uint64 `json:"missed,omitempty"`
			Reset  bool   `json:"reset,omitempty"`
		}{backlog.Missed, backlog.Reset})
		if cl.write(websocket.TextMessage, b) != nil {
			return
		}
	}
	for _, m := range backlog.Messages {
		if cl.write(websocket.TextMessage, m.JSON) != nil {
			return
		}
	}
	for {
		select {
		case <-cl.wake:
			cl.mu.Lock()
			q, notes, slow := cl.queue, cl.notes, cl.slow
			cl.queue, cl.notes = cl.spare[:0], nil
			cl.mu.Unlock()
			if slow {
				cl.close(websocket.ClosePolicyViolation, closeSlowReason)
				return
			}
			for _, b := range notes {
				if cl.write(websocket.TextMessage, b) != nil {
					return
				}
			}
			for i, m := range q {
				if cl.write(websocket.TextMessage, m.JSON) != nil {
					return
				}
				q[i] = nil
			}
			cl.spare = q
		case <-ticker.C:
			if cl.write(websocket.PingMessage, nil) != nil {
				return
			}
		case <-cl.readDone:
			return
		case <-cl.s.hub.Done():
			cl.close(websocket.CloseGoingAway, "server shutting down")
			return
		}
	}
}

// write sends one frame under a deadline. Must only be called from writePump.
func (cl *wsClient) write(kind int, b []byte) error {
	cl.conn.SetWriteDeadline(time.Now().Add(writeWait))
	return cl.conn.WriteMessage(kind, b)
}

// close sends a close frame and waits briefly for the peer's reply (which
// ends readPump). Must only be called from writePump.
func (cl *wsClient) close(code int, reason string) {
	msg := websocket.FormatCloseMessage(code, reason)
	if cl.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeWait)) != nil {
		return
	}
	select {
	case <-cl.readDone:
	case <-time.After(closeGrace):
	}
}

// wsPost is a client's frame: {"body": "..."}; other keys are ignored.
type wsPost struct {
	Body *json.RawMessage `json:"body"`
}

// readPump reads the client's frames until the connection ends. It enforces
// the frame size limit and the pong deadline, and posts each valid frame.
func (cl *wsClient) readPump() {
	s := cl.s
	// A body of BodyLimit bytes may be escaped up to 6x inside JSON.
	cl.conn.SetReadLimit(int64(s.cfg.BodyLimit)*6 + frameOverhead)
	cl.conn.SetReadDeadline(time.Now().Add(pongWait))
	cl.conn.SetPongHandler(func(string) error {
		return cl.conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	for {
		_, data, err := cl.conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.log.Debug("websocket frame too large", "wall", cl.wall.Name())
			}
			return
		}
		cl.conn.SetReadDeadline(time.Now().Add(pongWait))
		if !utf8.Valid(data) {
			// As Tornado, an invalid text frame ends the connection; we say why.
			msg := websocket.FormatCloseMessage(websocket.CloseInvalidFramePayloadData, "invalid UTF-8")
			cl.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeWait))
			return
		}
		if msg := cl.post(data); msg != "" {
			cl.note(msg)
		}
	}
}

// post publishes one frame's body and returns the error to report, if any.
func (cl *wsClient) post(data []byte) string {
	var p wsPost
	if err := json.Unmarshal(data, &p); err != nil {
		return `frame must be a JSON object like {"body": "text"}`
	}
	var raw string
	if p.Body == nil || json.Unmarshal(*p.Body, &raw) != nil {
		return `frame needs a string "body"`
	}
	body, herr := cl.s.cleanBody(raw)
	if herr != nil {
		return herr.Message.(string)
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if _, err := cl.s.broker.Publish(ctx, cl.wall.Name(), uuid.NewString(), body); err != nil {
		cl.s.log.Warn("publish failed", "wall", cl.wall.Name(), "err", err)
		return publishError(err).Message.(string)
	}
	return ""
}
