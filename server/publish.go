package server

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"wall/wall"
)

// publishRequest is the JSON body of POST /api/publish.
type publishRequest struct {
	Wall string  `json:"wall"`
	Body *string `json:"body"`
}

// handlePublish serves POST /api/publish for backends: JSON
// {"wall": "...", "body": "..."} with "Authorization: Bearer <token>", the
// stored message out. It goes through the same sequencer as every post.
func (s *Server) handlePublish(c echo.Context) error {
	if s.cfg.PublishToken == "" {
		return echo.NewHTTPError(http.StatusNotFound, "publish API disabled: no token configured")
	}
	r := c.Request()
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(auth), []byte(s.cfg.PublishToken)) != 1 {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="wall"`)
		return echo.NewHTTPError(http.StatusUnauthorized, "missing or wrong bearer token")
	}
	data, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, int64(s.cfg.BodyLimit)*6+frameOverhead))
	if err != nil {
		return bodyError(err)
	}
	// encoding/json would silently replace invalid UTF-8; refuse it instead.
	if !utf8.Valid(data) {
		return echo.NewHTTPError(http.StatusBadRequest, "Invalid unicode in body")
	}
	var p publishRequest
	if err := json.Unmarshal(data, &p); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, `body must be JSON like {"wall": "main", "body": "text"}`)
	}
	if p.Body == nil {
		return echo.NewHTTPError(http.StatusBadRequest, `missing "body"`)
	}
	body, herr := s.cleanBody(*p.Body)
	if herr != nil {
		return herr
	}
	name := p.Wall
	if name == "" {
		name = wall.DefaultWall
	} else if !wall.ValidName(name) {
		return echo.NewHTTPError(http.StatusBadRequest, wall.ErrBadName.Error())
	}
	m, herr := s.publish(r.Context(), name, body)
	if herr != nil {
		return herr
	}
	return c.Blob(http.StatusOK, jsonType, m.JSON)
}
