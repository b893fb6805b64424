package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
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

// publish stores a post (its body cleaned) through the broker, bounded by
// publishTimeout, and counts the outcome. Every entry path (form post,
// WebSocket frame, publish API) goes through it. Without a client-chosen
// id the post gets a new one; with one that the wall still holds, nothing
// is stored and the stored message is returned (stored false). The error
// is the client's answer.
func (s *Server) publish(ctx context.Context, p wall.Post) (m *wall.Message, stored bool, herr *echo.HTTPError) {
	// Memory is bounded by the hub's cache budget (wall.Hub.SetCacheBudget),
	// not by refusing new walls: a post to a new wall is always stored.
	name, start := p.Wall, time.Now()
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if p.ID == "" {
		p.ID = uuid.NewString()
	}
	m, stored, err := s.broker.Publish(ctx, p)
	if err != nil {
		s.metrics.postFailures.Inc()
		s.log.Warn("publish failed", "wall", wall.LogName(name), "err", err)
		return nil, false, publishError(err)
	}
	s.metrics.publish.Observe(time.Since(start).Seconds())
	if stored {
		s.metrics.posts.Inc()
		s.stats.posts.Add(1)
	}
	return m, stored, nil
}

// checkID checks a client-chosen message id: none, or a lowercase UUID4.
func checkID(id string) *echo.HTTPError {
	if id != "" && !wall.ValidID(id) {
		return echo.NewHTTPError(http.StatusBadRequest, "id must be a lowercase UUID4")
	}
	return nil
}

// publishError maps a broker error to the client's answer.
func publishError(err error) *echo.HTTPError {
	switch {
	case errors.Is(err, wall.ErrBodyTooLarge):
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "body too large")
	case errors.Is(err, wall.ErrUnavailable):
		return echo.NewHTTPError(http.StatusServiceUnavailable, "message store unavailable, try again")
	case errors.Is(err, context.DeadlineExceeded):
		return echo.NewHTTPError(http.StatusServiceUnavailable, "timed out storing the message, try again")
	}
	return echo.NewHTTPError(http.StatusInternalServerError, "could not store the message")
}
