package server

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"wall/server/internal/longpoll"
	"wall/server/internal/outbound"
)

// Leaving an instance: Drain (SIGTERM), then the hub closes (Hub.Close),
// then Wait. main runs them in that order, and stops its http.Server's
// listener right after Drain begins:
//
//   - from the first moment of Drain, /readyz answers 503, so a balancer
//     or Kubernetes sends nothing new here;
//   - polls waiting (in the engine or in net/http) are answered at once,
//     their connections told to close, and new polls are answered at
//     once too; new WebSockets and event streams get 503;
//   - WebSockets (close 1012 with a jittered reconnect hint) and event
//     streams (a jittered retry:) are closed one by one, spread evenly
//     over the drain time, so their clients reconnect to the other
//     instances at an even rate rather than all in the same second;
//   - Hub.Close tells whoever is left at once (a drain cut short by the
//     shutdown timeout), and Wait waits for the last connection.

// readyTimeout bounds the readiness check of one /readyz.
const readyTimeout = time.Second

// reconnectHint draws the delay a connection closed by a drain or a
// shutdown asks its client to wait before it reconnects, from
// [sseShutdownRetryMin, sseShutdownRetryMax): the WebSocket close
// reason's reconnect_ms, the event stream's retry:. The drain spreads the
// closes over its span; the hint spreads the reconnects of the clients
// told at the same moment (all of them, without a drain).
func reconnectHint() time.Duration {
	return sseShutdownRetryMin + rand.N(sseShutdownRetryMax-sseShutdownRetryMin)
}

// Drain begins the paced drain over span and returns at once; the
// channel is closed once every streaming connection has been told to
// close. A second call returns the first one's channel.
func (s *Server) Drain(span time.Duration) <-chan struct{} {
	s.stopping()
	return s.streams.Drain(span, func(m outbound.Member) bool { return m.Transport() != longpoll.Transport })
}

// stopping marks the beginning of the end (Drain, or the hub closing):
// the long-poll engine and the polls waiting in net/http answer, and new
// polls are answered at once.
func (s *Server) stopping() { s.quitOnce.Do(func() { close(s.quit) }) }

// draining reports whether the instance is leaving (Drain began, or the
// hub closed).
func (s *Server) draining() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// handleReady serves GET /readyz, for balancers and Kubernetes: 503 from
// the first moment of a drain, while the message store is unreachable or
// this instance is catching up after reconnecting to it (Config.Ready),
// 200 otherwise. /healthz is liveness: 200 while the process serves.
func (s *Server) handleReady(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	if s.draining() {
		return c.String(http.StatusServiceUnavailable, "draining\n")
	}
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			return c.String(http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
		}
	}
	return c.String(http.StatusOK, "ready\n")
}
