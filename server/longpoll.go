package server

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/server/internal/longpoll"
	"wall/wall"
)

// pollArgsLimit bounds the body of a poll request: it only carries a cursor,
// a wall and a token.
const pollArgsLimit = longpoll.MaxBody

// handleUpdates serves the long-poll, POST (legacy, XSRF-checked) and GET
// (a plain read). It answers at once when there are messages after the
// cursor, otherwise it waits for the next message, the poll timeout or
// shutdown. Waiting registers nothing, so a client that hangs up leaves
// nothing behind: the handler returns and the wall's wake-up channel it was
// watching is simply dropped. When the server has a Listener, a poll that
// has to wait is handed to the long-poll engine instead (engine.go).
func (s *Server) handleUpdates(c echo.Context) error {
	_, t, err := s.admitHTTP(c, admit.Poll, pollArgsLimit)
	if err != nil {
		return err
	}
	defer t.Hold.Release() // answered; or the engine took it over (Park)
	r := c.Request()
	cursor := t.Cursor
	w := s.hub.Acquire(t.Wall)
	defer s.hub.Release(w)
	if herr := s.sync(r.Context(), w, cursor); herr != nil {
		return herr
	}

	// A token with exp: the poll is answered by the time the token is
	// refused (the next poll then gets 401), with nothing stored later.
	deadline := time.Now().Add(s.cfg.PollTimeout)
	expires := s.cfg.Identity.RefusedFrom(t.Who)
	if !expires.IsZero() && expires.Before(deadline) {
		deadline = expires
	} else {
		expires = time.Time{}
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for first := true; ; first = false {
		res, changed := w.Poll(cursor)
		if !expires.IsZero() && !time.Now().Before(expires) {
			// Refused from now on: a timeout answer, whatever came (the
			// next poll, with a new token, gets it from the same cursor).
			s.answerBy(c)
			return c.Blob(http.StatusOK, jsonType, timeoutResponse(cursor))
		}
		if len(res.Messages) > 0 {
			s.answerBy(c)
			return c.Blob(http.StatusOK, jsonType, appendPollResponse(nil, res))
		}
		// With the engine enabled, the wait leaves net/http.
		if first && s.engine.Park(c.Response(), r, w, cursor, deadline, !expires.IsZero(), &t.Hold) {
			return nil
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return nil // the client hung up: write nothing
		case <-timer.C:
			s.answerBy(c)
			return c.Blob(http.StatusOK, jsonType, timeoutResponse(cursor))
		case <-s.quit: // draining, or shutting down
			s.answerBy(c)
			return c.Blob(http.StatusOK, jsonType, timeoutResponse(cursor))
		}
	}
}

// sync catches this instance up with a cursor it cannot place yet (one
// minted by a peer a few milliseconds ahead), or with a wall it holds no
// message of (it may never have loaded it), bounded by SyncWait. A cursor
// that is still unknown afterwards gets the whole cache with "reset". When
// the broker cannot tell (Redis away, or too slow), the answer is a 503:
// the client retries, rather than take its cursor for lost and see the
// cache again as a reset.
func (s *Server) sync(ctx context.Context, w *wall.Wall, c wall.Cursor) *echo.HTTPError {
	if syncless(w, c) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SyncWait)
	defer cancel()
	err := s.broker.Sync(ctx, w.Name(), c)
	if err == nil || !c.Set || w.Has(c) {
		return nil
	}
	s.log.Warn("cursor sync failed", "wall", wall.LogName(w.Name()), "cursor", c.String(), "err", err)
	return echo.NewHTTPError(http.StatusServiceUnavailable, "message store unavailable, try again")
}

// syncless reports whether w can serve a poll from c without asking the
// broker: it holds the cursor's message, or c is unset and w has some.
func syncless(w *wall.Wall, c wall.Cursor) bool { return w.Has(c) && w.Last() > 0 }
