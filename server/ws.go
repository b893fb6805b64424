package server

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/server/internal/identity"
	"wall/server/internal/wsframe"
	"wall/wall"
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
		Error:       s.handshakeError,
	}
}

// handshakeError answers a handshake the upgrader refuses (a foreign
// origin, a request that is no WebSocket handshake) as every error is
// answered, and counts it.
func (s *Server) handshakeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	s.refused(status, reason.Error())
	w.Header().Set("Content-Type", jsonType)
	w.WriteHeader(status)
	w.Write(appendErrorBody(nil, reason.Error()))
}

// checkOrigin allows handshakes without Origin (non-browser clients), from
// the page's own origin (scheme and host: a page served over plain HTTP
// may not open the HTTPS site's sockets), and from the configured origins.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err == nil && strings.EqualFold(u.Scheme, s.requestScheme(r)) && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// requestScheme is the scheme the client used: https on a TLS
// connection, or what X-Forwarded-Proto says when a trusted proxy
// (-trusted-proxies) sent it, else http.
func (s *Server) requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); (p == "https" || p == "http") && s.fromTrustedProxy(r) {
		return p
	}
	return "http"
}

// fromTrustedProxy reports whether the peer is one of TrustedProxies.
func (s *Server) fromTrustedProxy(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap().WithZone("")
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// handleWS serves /ws and /chatsocket: arguments wall, cursor, token and
// heartbeat in the query string. With a cursor the messages after it are
// sent first, then live messages, with nothing lost or repeated in
// between. heartbeat=1 asks for a {"heartbeat": true} text frame with
// every ping, which page scripts (blind to pings) use to notice a dead
// connection.
//
// The handler returns right after the upgrade: the connection is served by
// a reader goroutine of its own (with a small stack, unlike net/http's
// connection goroutine that ran the middleware) and a writer goroutine
// that exists only while there is something to write.
func (s *Server) handleWS(c echo.Context) error {
	a, t, err := s.admitHTTP(c, admit.Socket, 0)
	if err != nil {
		return err
	}
	opts := s.wsOpts
	if hb, _ := a.get("heartbeat"); hb == "1" {
		opts = s.wsHeartbeatOpts
	}
	st, err := s.openStream(c, t, opts, func() (net.Conn, error) {
		conn, err := s.upgrader.Upgrade(c.Response(), c.Request(), nil)
		if err != nil {
			return nil, nil // the upgrader has answered (400/403)
		}
		// From here on gorilla's Conn is not used: see wsconn.go.
		return conn.NetConn(), nil
	})
	if err != nil || st.sess == nil {
		return err
	}
	go (&wsConn{stream: st, user: t.Who.Sub, mayPost: t.MayPost, client: t.Client}).readPump()
	return nil
}

// wsPost is a client's frame: a post {"body": "...", "id": "..."}, or a
// token refresh {"token": "<jwt>"}; other keys are ignored.
type wsPost struct {
	Body  *json.RawMessage `json:"body"`
	ID    *json.RawMessage `json:"id"`
	Token *json.RawMessage `json:"token"`
}

// post publishes one frame's body, or hands a token frame to refresh. A
// frame that names an id is acknowledged: if its message is stored now,
// the wall delivers it to this socket like to every subscriber; if the id
// was stored before (a retry), the stored message is sent to this socket
// alone. It returns the frame to send the sender, if any: an error frame,
// which names the id when the frame had one, or a refresh's answer.
func (c *wsConn) post(data []byte) []byte {
	if !utf8.Valid(data) { // a binary frame; text frames were checked
		return c.s.frameError(http.StatusBadRequest, "Invalid unicode in body", "")
	}
	var p wsPost
	if err := json.Unmarshal(data, &p); err != nil {
		return c.s.frameError(http.StatusBadRequest, `frame must be a JSON object like {"body": "text"}`, "")
	}
	if p.Token != nil {
		return c.refresh(&p)
	}
	var id string
	if p.ID != nil && (json.Unmarshal(*p.ID, &id) != nil || !wall.ValidID(id)) {
		return c.s.frameError(http.StatusBadRequest, "id must be a lowercase UUID4", id)
	}
	if !c.mayPost {
		return c.s.frameError(http.StatusUnauthorized, "anonymous clients may not post: present a token", id)
	}
	if c.sess.Expired() { // the socket's token: refused by now, as an HTTP post with it
		return c.s.frameError(http.StatusUnauthorized, msgTokenExpired, id)
	}
	// The client's post rate, as admission counts it for form posts.
	if aerr := c.s.admit.Post(c.client); aerr != nil {
		return c.s.frameError(aerr.Status, aerr.Message, id)
	}
	var raw string
	if p.Body == nil || json.Unmarshal(*p.Body, &raw) != nil {
		return c.s.frameError(http.StatusBadRequest, `frame needs a string "body"`, id)
	}
	body, herr := c.s.cleanBody(raw)
	if herr != nil {
		return c.s.frameError(herr.Code, herr.Message.(string), id)
	}
	m, stored, herr := c.s.publish(context.Background(), wall.Post{Wall: c.wall.Name(), ID: id, Body: body, User: c.user})
	if herr != nil {
		return c.s.frameError(herr.Code, herr.Message.(string), id)
	}
	if !stored && id != "" {
		c.sess.Send(m) // behind what is queued: a retry's answer, already seen or caught up
	}
	return nil
}

// refresh handles a {"token": "<jwt>"} frame: admission checks the fresh
// token against the connection (its user, its wall), and the session's
// expiry moves to the new token's, or goes if it has no exp. The sender
// is answered {"refreshed": true, "exp": <unix seconds, 0 for none>} or an
// error frame (the frame returned); a refused or late refresh leaves the
// old expiry, at which the connection still ends.
func (c *wsConn) refresh(p *wsPost) []byte {
	var token string
	if p.Body != nil || json.Unmarshal(*p.Token, &token) != nil {
		return c.s.frameError(http.StatusBadRequest, `frame must be {"body": "text"} or {"token": "<jwt>"}`, "")
	}
	who, aerr := c.s.admit.Refresh(admit.Ticket{Wall: c.wall.Name(), Who: identity.Identity{Sub: c.user}}, token)
	if aerr != nil {
		return c.s.frameError(aerr.Status, aerr.Message, "")
	}
	if !c.sess.Refresh(c.s.cfg.Identity.RefusedFrom(who)) {
		// The old token's expiry came first: the session is ending.
		return c.s.frameError(http.StatusUnauthorized, msgTokenExpired, "")
	}
	var exp int64
	if !who.Expires.IsZero() {
		exp = who.Expires.Unix()
	}
	return wsframe.Text([]byte(`{"refreshed": true, "exp": ` + strconv.FormatInt(exp, 10) + `}`))
}

// frameError counts a refused frame post with the status its HTTP post
// would get, and returns its error frame, which carries that status so a
// client can tell a post to retry later (429, 503) from one to give up.
func (s *Server) frameError(status int, msg, id string) []byte {
	s.refused(status, msg)
	return errorFrame(msg, id, status)
}

// errorFrame encodes {"error": msg, "status": status} as a text frame,
// with "id" when the post it answers named one.
func errorFrame(msg, id string, status int) []byte {
	v := map[string]any{"error": msg, "status": status}
	if id != "" {
		v["id"] = id
	}
	b, _ := json.Marshal(v)
	return wsframe.Text(b)
}
