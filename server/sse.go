package server

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
)

// Server-sent events (GET /sse) are a second streaming transport over the
// outbound session: an encoder (sseconn.go) and the handler below. The
// response is written on the hijacked connection, like a WebSocket's
// frames, by the session's one writer: net/http's chunked writer and its
// per-request goroutine are not involved once the stream starts.

// Server-sent events timing and limits.
const (
	sseTransport  = "sse"           // the transport's name in counts and metrics
	sseRetry      = 2 * time.Second // the reconnection delay a stream asks its client for
	sseMaxInbound = 4 << 10         // bytes a client may send after its request before it is cut off
)

// sseHeadTail ends the response head: no Content-Length and no chunked
// framing, the stream runs until the connection closes (Connection:
// close), which every HTTP/1.x client and proxy understands. The retry:
// hint follows at once, so the client and any proxy see bytes at once.
var sseHeadTail = []byte("\r\nretry: " + strconv.FormatInt(sseRetry.Milliseconds(), 10) + "\n\n")

// sseSource is a stream request as admission reads it: a browser that
// reconnects sends the id of the last event it got as Last-Event-ID, to
// the URL it first opened, so that header wins over the cursor argument.
type sseSource struct{ httpSource }

func (s sseSource) Arg(name string) (string, bool) {
	if name == "cursor" {
		if id := s.r.Header.Get("Last-Event-ID"); id != "" {
			return id, true
		}
	}
	return s.httpSource.Arg(name)
}

// handleSSE serves GET /sse: arguments wall, cursor (or the Last-Event-ID
// header) and heartbeat=1. A refused request gets its JSON error before
// any stream byte. Then, as for a WebSocket: a gap or reset event if the
// cursor fell out of the cache, the catch-up, and live messages, with
// nothing lost or repeated in between; a comment (or, with heartbeat=1,
// a heartbeat event) at every keepalive tick.
func (s *Server) handleSSE(c echo.Context) error {
	a, err := readArgs(c, 0)
	if err != nil {
		return err
	}
	t, aerr := s.admit.Admit(sseSource{httpSource{c.Request(), a}}, admit.Stream)
	if aerr != nil {
		return aerr
	}
	hb, _ := a.get("heartbeat")
	st, err := s.openStream(c, t, s.sse.options(hb == "1"), func() (net.Conn, error) { return s.startStream(c) })
	if err != nil || st.sess == nil {
		return err // refused, or the client is gone (nil)
	}
	go (&sseConn{stream: st}).readPump()
	return nil
}

// startStream takes the connection over from net/http and writes the
// response head and the retry: hint. Headers set by middleware so far are
// kept. An error is either the 500 to answer (the connection could not be
// taken over: nothing was written) or nil with the connection already
// closed (the head could not be written).
func (s *Server) startStream(c echo.Context) (conn net.Conn, err error) {
	res := c.Response()
	conn, _, err = http.NewResponseController(res).Hijack()
	if err != nil {
		s.log.Error("cannot take over a connection for an event stream", "err", err)
		return nil, echo.NewHTTPError(http.StatusInternalServerError, "event streams need HTTP/1.1")
	}
	h := res.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer, whatever proxy_buffering says
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Del("Content-Length")
	h.Del("Transfer-Encoding")
	// net/http's deadlines (the deadlines middleware's write deadline)
	// stay on a hijacked connection: the session sets its own.
	conn.SetDeadline(time.Time{})
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h.Write(&head)
	head.Write(sseHeadTail)
	conn.SetWriteDeadline(time.Now().Add(writeWait))
	_, err = conn.Write(head.Bytes())
	conn.SetWriteDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, nil
	}
	// For the request logger; and no error may be written after this.
	res.Status, res.Committed = http.StatusOK, true
	return conn, nil
}
