package server

import (
	"net/http"
	"strings"
	"wall/server/internal/admit"
	"wall/wall"

	"github.com/labstack/echo/v4"
)

// requestLimit is the largest request body read for a post: the body limit
// percent-encoded (up to 3 bytes per byte) plus room for other fields.
func (s *Server) requestLimit() int64 { return int64(s.cfg.BodyLimit)*3 + 4096 }

// handlePost serves POST /a/message/new: body, _xsrf, next, wall and id
// (optional, a client-chosen lowercase UUID4 that makes a retry store
// nothing new). The errors come in Tornado's order: xsrf (403) and the
// rest of admission, then body (400/413), next and id (400); nothing is
// stored on any of them.
func (s *Server) handlePost(c echo.Context) error {
	a, t, err := s.admitHTTP(c, admit.Post, s.requestLimit())
	if err != nil {
		return err
	}
	raw, ok := a.get("body")
	if !ok {
		return echo.NewHTTPError(http.StatusBadRequest, "Missing argument body")
	}
	body, herr := s.cleanBody(raw)
	if herr != nil {
		return herr
	}
	next, _ := a.get("next")
	if next != "" && !safeNext(next) {
		return echo.NewHTTPError(http.StatusBadRequest, "next must be a local path")
	}
	id, _ := a.get("id")
	if herr := checkID(id); herr != nil {
		return herr
	}
	m, _, herr := s.publish(c.Request().Context(), wall.Post{Wall: t.Wall, ID: id, Body: body, User: t.Who.Sub})
	if herr != nil {
		if c.Request().Context().Err() != nil {
			return nil // the client is gone; the message, if sequenced, stands
		}
		return herr
	}
	if next != "" {
		return c.Redirect(http.StatusFound, next)
	}
	return c.Blob(http.StatusOK, jsonType, m.JSON)
}

// jsonType is the Content-Type of every JSON answer, as Tornado sends it.
const jsonType = "application/json; charset=UTF-8"

// safeNext accepts only local paths: "/x" but not "//host" or "/\host",
// which browsers treat as another host (the 2025 open-redirect fix).
func safeNext(next string) bool {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return false
	}
	for i := 0; i < len(next); i++ {
		if next[i] < ' ' || next[i] == 0x7f {
			return false
		}
	}
	return true
}
