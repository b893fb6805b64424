package server

import (
	"context"
	"net"
	"time"

	"wall/server/internal/admit"
	"wall/server/internal/longpoll"
	"wall/wall"
)

// engineApp is the application as the long-poll engine sees it
// (longpoll.App): the server's admission, hub and broker sync.
type engineApp struct{ s *Server }

var _ longpoll.App = engineApp{}

func (a engineApp) Admit(src admit.Source) (admit.Ticket, *admit.Error) {
	t, err := a.s.admit.Admit(src, admit.Poll)
	if err != nil {
		a.s.refused(err.Status, err.Message) // the engine answers it
	}
	return t, err
}

func (a engineApp) Acquire(name string) *wall.Wall { return a.s.hub.Acquire(name) }
func (a engineApp) Release(w *wall.Wall)           { a.s.hub.Release(w) }
func (a engineApp) Done() <-chan struct{}          { return a.s.quit }

func (a engineApp) RefusedFrom(t admit.Ticket) time.Time { return a.s.cfg.Identity.RefusedFrom(t.Who) }

func (a engineApp) Syncless(w *wall.Wall, c wall.Cursor) bool { return syncless(w, c) }

func (a engineApp) Sync(ctx context.Context, w *wall.Wall, c wall.Cursor) *admit.Error {
	if err := a.s.sync(ctx, w, c); err != nil {
		code, msg, _ := errorStatus(err)
		a.s.refused(code, msg) // the engine answers it
		return &admit.Error{Status: code, Message: msg}
	}
	return nil
}

// newEngine builds the server's long-poll engine.
func (s *Server) newEngine() *longpoll.Engine {
	return longpoll.New(engineApp{s}, s.flusher, &s.streams, s.log, longpoll.Config{
		PollTimeout:    s.cfg.PollTimeout,
		IdleTimeout:    s.cfg.IdleTimeout,
		WriteTimeout:   writeWait,
		CloseGrace:     closeGrace,
		Lag:            s.metrics.lagOf(longpoll.Transport),
		TestHookParked: s.cfg.testHookParked,
	})
}

// Listener returns a listener over ln for http.Server.Serve that enables
// the long-poll engine (longpoll.Engine.Listener): polls that have to
// wait leave net/http and wait with no buffers and, on Linux, no
// goroutine. A Server that was never given a Listener (mounted as a plain
// http.Handler) serves polls through net/http only.
func (s *Server) Listener(ln net.Listener) net.Listener { return s.engine.Listener(ln) }

// The poll answers' encoders are the engine's, so both paths write the
// same bytes.

func appendPollResponse(b []byte, r wall.Result) []byte { return longpoll.AppendPollResponse(b, r) }
func timeoutResponse(c wall.Cursor) []byte              { return longpoll.TimeoutResponse(c) }
func appendErrorBody(b []byte, msg string) []byte       { return longpoll.AppendErrorBody(b, msg) }
