package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"wall/wall"
)

// publishTimeout bounds how long a post waits for the sequencer and for its
// own instance to apply the message.
const publishTimeout = 10 * time.Second

// cleanBody turns a raw body from any entry path (form, WebSocket frame,
// publish API) into a stored body: the size limit (413), UTF-8 (400), then
// Tornado's processing, and an empty result is refused (400).
func (s *Server) cleanBody(raw string) (string, *echo.HTTPError) {
	if len(raw) > s.cfg.BodyLimit {
		return "", echo.NewHTTPError(http.StatusRequestEntityTooLarge, "body too large")
	}
	body, err := wall.CleanBody(raw)
	if err != nil {
		return "", echo.NewHTTPError(http.StatusBadRequest, "Invalid unicode in body")
	}
	if body == "" {
		return "", echo.NewHTTPError(http.StatusBadRequest, "body is empty")
	}
	return body, nil
}

// wallArg returns the wall named by a request's arguments, or the default.
func wallArg(a args) (string, *echo.HTTPError) {
	name, ok := a.get("wall")
	if !ok || name == "" {
		return wall.DefaultWall, nil
	}
	if !wall.ValidName(name) {
		return "", echo.NewHTTPError(http.StatusBadRequest, wall.ErrBadName.Error())
	}
	return name, nil
}

// publishError maps a broker error to the client's answer.
func publishError(err error) *echo.HTTPError {
	switch {
	case errors.Is(err, wall.ErrUnavailable):
		return echo.NewHTTPError(http.StatusServiceUnavailable, "message store unavailable, try again")
	case errors.Is(err, context.DeadlineExceeded):
		return echo.NewHTTPError(http.StatusServiceUnavailable, "timed out storing the message, try again")
	}
	return echo.NewHTTPError(http.StatusInternalServerError, "could not store the message")
}
