package server

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
)

// Every handler admits its request with s.admit (internal/admit): the one
// admission function, which the long-poll engine calls too. The sources
// below are how the net/http paths present a request to it.

// httpSource is a request read by net/http, with its arguments merged.
type httpSource struct {
	r *http.Request
	a args
}

func (h httpSource) Method() string                 { return h.r.Method }
func (h httpSource) Arg(name string) (string, bool) { return h.a.get(name) }
func (h httpSource) Header(name string) string      { return h.r.Header.Get(name) }
func (h httpSource) Peer() string                   { return h.r.RemoteAddr }

func (h httpSource) Cookie(name string) (string, bool) {
	c, err := h.r.Cookie(name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

// admitHTTP reads a request's arguments (the body under limit) and admits
// it as kind k.
func (s *Server) admitHTTP(c echo.Context, k admit.Kind, limit int64) (args, admit.Ticket, error) {
	a, err := readArgs(c, limit)
	if err != nil {
		return nil, admit.Ticket{}, err
	}
	t, aerr := s.admit.Admit(httpSource{c.Request(), a}, k)
	if aerr != nil {
		return nil, t, aerr
	}
	return a, t, nil
}

// errorStatus returns the status and message an error is answered with:
// an admission refusal or an echo.HTTPError as they say, anything else as
// a 500 (ok false: it deserves a log line).
func errorStatus(err error) (code int, msg string, ok bool) {
	var ae *admit.Error
	if errors.As(err, &ae) {
		return ae.Status, ae.Message, true
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		if m, ok := he.Message.(string); ok {
			return he.Code, m, true
		}
		return he.Code, http.StatusText(he.Code), true
	}
	return http.StatusInternalServerError, "internal server error", false
}
