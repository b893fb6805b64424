package server

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// Cross-origin use of the HTTP transports (CORS). The origins allowed are
// the ones allowed to open WebSockets (Config.AllowedOrigins, -origins):
// a page on one of them may read a wall over /sse and long-poll and post
// to it. Any page may import the client library (/static). Same-origin requests
// (the Origin's host is the request's Host, as checkOrigin decides for
// WebSockets) need nothing from here.
//
// A listed origin is echoed back with Access-Control-Allow-Credentials,
// so its scripts may send this site's cookies (wall_token) if they ask;
// "*" allows any origin but never with credentials: a page anywhere may
// then read public walls and post with a token it holds, not act with the
// reader's cookies.

// corsMaxAge is how long a browser may cache a preflight's answer.
const corsMaxAge = "600" // seconds

// corsPath reports whether a path serves cross-origin clients: the read
// and post endpoints, the event stream and a wall's presence.
func corsPath(p string) bool {
	return p == "/a/message/updates" || p == "/a/message/new" || p == "/sse" || strings.HasPrefix(p, "/api/walls/")
}

// cors is middleware: it answers preflights and adds the CORS headers of
// an allowed origin. A read (event stream or poll) from an origin that is
// not allowed is refused with 403 before it does anything, as its
// WebSocket handshake would be; the refusal itself is readable by the
// page, so its client can say why rather than retry.
func (s *Server) cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		h := c.Response().Header()
		if strings.HasPrefix(r.URL.Path, "/static/") {
			// Public files, the client library first: any page may
			// import it, and learn from the transports whether it may
			// use them. Sent to every request, so that a shared cache
			// never keeps a copy without it.
			h.Set("Access-Control-Allow-Origin", "*")
			return next(c)
		}
		if !corsPath(r.URL.Path) {
			return next(c)
		}
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" || sameHost(origin, r.Host) {
			return next(c)
		}
		allowed, anyOrigin := s.corsOrigin(origin)
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		switch {
		case !allowed && preflight:
			return c.NoContent(http.StatusForbidden)
		case !allowed && r.Method == http.MethodGet:
			h.Set("Access-Control-Allow-Origin", origin)
			return echo.NewHTTPError(http.StatusForbidden, "origin not allowed: "+origin)
		case !allowed:
			// A post, which the XSRF check (or, with a token, the refused
			// preflight) keeps out: no headers, so the page cannot read
			// the answer.
			return next(c)
		case anyOrigin:
			h.Set("Access-Control-Allow-Origin", "*")
		default:
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if preflight {
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			// Authorization carries a token; the others are what a post or
			// a resumed event stream may send besides the safelisted ones.
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, X-XSRFToken")
			h.Set("Access-Control-Max-Age", corsMaxAge)
			return c.NoContent(http.StatusNoContent)
		}
		if r.URL.Path == "/a/message/updates" {
			// The long-poll engine writes its own answers on the
			// connections it takes over, without these headers: a
			// cross-origin poll waits in net/http instead.
			c.Response().Writer = noHijack{c.Response().Writer}
		}
		return next(c)
	}
}

// corsOrigin reports whether origin may use the transports, and whether
// that is by the wildcard.
func (s *Server) corsOrigin(origin string) (allowed, anyOrigin bool) {
	for _, o := range s.cfg.AllowedOrigins {
		if strings.EqualFold(o, origin) {
			return true, false
		}
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" {
			return true, true
		}
	}
	return false, false
}

// sameHost reports whether origin is the site of a request to host.
func sameHost(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

// noHijack is a ResponseWriter that cannot be taken over: a request
// answered through it stays in net/http. It passes on flushes and
// deadlines.
type noHijack struct{ w http.ResponseWriter }

func (n noHijack) Header() http.Header         { return n.w.Header() }
func (n noHijack) Write(b []byte) (int, error) { return n.w.Write(b) }
func (n noHijack) WriteHeader(code int)        { n.w.WriteHeader(code) }
func (n noHijack) FlushError() error           { return http.NewResponseController(n.w).Flush() }

func (n noHijack) SetReadDeadline(t time.Time) error {
	return http.NewResponseController(n.w).SetReadDeadline(t)
}

func (n noHijack) SetWriteDeadline(t time.Time) error {
	return http.NewResponseController(n.w).SetWriteDeadline(t)
}
