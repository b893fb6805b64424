package server

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"wall/server/internal/admit"
	"wall/server/internal/form"
)

// routes builds the echo instance with every route of the server.
func (s *Server) routes(assets fs.FS) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.Recover())
	e.Use(s.securityHeaders()) // headers.go
	e.Use(s.requestLogger())
	e.Use(s.deadlines)
	e.Use(s.cors)         // cross-origin readers and posters (cors.go)
	e.Use(s.keepFormText) // a refused no-JS post gets its text back (errorpage.go)
	e.Use(middleware.GzipWithConfig(middleware.GzipConfig{
		// Only pages and assets: long-polls and WebSockets are streamed
		// pre-encoded bytes.
		Skipper: func(c echo.Context) bool {
			p := c.Request().URL.Path
			return !(p == "/" || strings.HasPrefix(p, "/w/") || strings.HasPrefix(p, "/static/"))
		},
	}))

	e.GET("/", s.handlePage)
	e.GET("/w/:wall", s.handlePage)

	// The legacy protocol of Tornado's chat demo, plus GET polls.
	e.POST("/a/message/new", s.handlePost)
	e.POST("/a/message/updates", s.handleUpdates)
	e.GET("/a/message/updates", s.handleUpdates)

	// WebSocket: ours, and the legacy websocket demo's path.
	e.GET("/ws", s.handleWS)
	e.GET("/chatsocket", s.handleWS)
	e.GET("/sse", s.handleSSE) // server-sent events

	// Backend publishing, authenticated by a bearer token.
	e.POST("/api/publish", s.handlePublish)
	e.GET("/api/walls/:wall", s.handleWallStats) // presence and stats (stats.go)
	e.GET("/admin", s.handleAdmin)               // behind the admin token (admin.go)

	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") }) // liveness
	e.GET("/readyz", s.handleReady)                                                          // readiness (drain.go)
	e.GET("/metrics", s.metricsHandler())

	static := e.Group("/static", func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if c.QueryParam("v") != "" { // content-hashed URL
				c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			}
			return next(c)
		}
	})
	static.StaticFS("/", assets)
	return e
}

// handleError writes every error as a short JSON object with its status
// (appendErrorBody: the long-poll engine writes the same bytes). Legacy
// clients never read error bodies; ours show the message.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, msg, ok := errorStatus(err)
	if !ok {
		s.log.Error("request failed", "method", c.Request().Method, "route", c.Path(), "err", err) // the route: a path may name a private wall
	}
	s.refused(code, msg)
	if code == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="wall"`)
	}
	var ae *admit.Error
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	if s.htmlError(c, code, msg) {
		return
	}
	if c.Request().Method == http.MethodHead {
		err = c.NoContent(code)
	} else {
		err = c.Blob(code, jsonType, appendErrorBody(nil, msg))
	}
	if err != nil {
		s.log.Debug("writing error response", "err", err)
	}
}

// requestLogger logs server errors loudly and everything else at debug
// level: at tens of thousands of polls a second, info logs would cost more
// than the polls.
func (s *Server) requestLogger() echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogURI: true, LogMethod: true, LogLatency: true, LogError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelDebug
			if v.Status >= 500 {
				level = slog.LevelError
			}
			if !s.log.Enabled(c.Request().Context(), level) {
				return nil // not logged: no need to redact it either
			}
			s.log.LogAttrs(c.Request().Context(), level, "request",
				slog.String("method", v.Method), slog.String("uri", redactToken(v.URI)),
				slog.Int("status", v.Status), slog.Duration("latency", v.Latency))
			return nil
		},
	})
}

// redactToken returns uri with the value of every token argument (an
// identity token is a secret) replaced by "REDACTED". A uri without one
// is returned as is, without allocating.
func redactToken(uri string) string {
	path, query, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	found := false
	form.EachPair(query, func(k, _ string) { found = found || form.Unquote(k) == "token" })
	if !found {
		return uri
	}
	var b strings.Builder
	b.WriteString(path + "?")
	for i, kv := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		if k, _, _ := strings.Cut(kv, "="); form.Unquote(k) == "token" {
			kv = k + "=REDACTED"
		}
		b.WriteString(kv)
	}
	return b.String()
}

// deadlines sets the read deadline for a request's body (BodyTimeout: a
// client that trickles its body is cut off instead of holding a
// connection for as long as it likes) and the write deadline for its
// answer (WriteTimeout: a client that does not read a large answer is cut
// off). A GET's read deadline is left alone: net/http
// is already reading ahead to notice a hang-up, and a deadline would end
// that read and cancel the request. A body's read deadline is cleared as
// soon as the body is read (doneReading), for the same reason. Handlers
// that answer late (long-polls) set the write deadline again when their
// answer is ready (answerBy). WebSocket handshakes are left alone: the
// connection is hijacked and sets its own.
func (s *Server) deadlines(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Header.Get("Upgrade") == "" {
			rc := http.NewResponseController(c.Response())
			now := time.Now()
			if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
				rc.SetReadDeadline(now.Add(s.cfg.BodyTimeout))
			}
			rc.SetWriteDeadline(now.Add(s.cfg.WriteTimeout))
		}
		return next(c)
	}
}

// doneReading clears the body's read deadline once the body is read.
func doneReading(c echo.Context) {
	http.NewResponseController(c.Response()).SetReadDeadline(time.Time{})
}

// answerBy sets the write deadline of an answer that is ready now.
func (s *Server) answerBy(c echo.Context) {
	http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
}
