package server

import (
	"net/http"

	"wall/server/internal/admit"
)

// refusal is why a request was refused, the reason label of
// wall_refusals_total. Every refusal is counted in one place, refused:
// the error writer (routes.go: handleError), a refused WebSocket
// handshake (the upgrader's Error), the long-poll engine's own answers
// (engine.go) and WebSocket frame posts (ws.go: frameError) all call it.
type refusal uint8

// The reasons.
const (
	refBadRequest       refusal = iota // 400: malformed arguments, body, id, frame
	refUnauthorized                    // 401: a token is required, or is wrong
	refForbidden                       // 403: XSRF, a private wall, a foreign origin
	refNotFound                        // 404: no such route, or the publish API is off
	refTooLarge                        // 413: a body or request past the limit
	refRateLimited                     // 429: posts past -post-rate
	refTooManyConns                    // 429: connections past -max-conns-per-client
	refStoreUnavailable                // 503: Redis away or too slow
	refDraining                        // 503: the instance is shutting down
	refOther                           // any other status
	numRefusals
)

var refusalNames = [numRefusals]string{
	refBadRequest:       "bad_request",
	refUnauthorized:     "unauthorized",
	refForbidden:        "forbidden",
	refNotFound:         "not_found",
	refTooLarge:         "too_large",
	refRateLimited:      "rate_limited",
	refTooManyConns:     "too_many_connections",
	refStoreUnavailable: "store_unavailable",
	refDraining:         "draining",
	refOther:            "other",
}

func (r refusal) String() string { return refusalNames[r] }

// msgDraining is the message of a refusal that shares its status with
// others.
const msgDraining = "server shutting down"

// refusalOf types a refusal by its status and, where a status has several
// causes, its message.
func refusalOf(code int, msg string) refusal {
	switch code {
	case http.StatusBadRequest:
		return refBadRequest
	case http.StatusUnauthorized:
		return refUnauthorized
	case http.StatusForbidden:
		return refForbidden
	case http.StatusNotFound:
		return refNotFound
	case http.StatusRequestEntityTooLarge:
		return refTooLarge
	case http.StatusTooManyRequests:
		if msg == admit.MsgTooManyConns {
			return refTooManyConns
		}
		return refRateLimited
	case http.StatusServiceUnavailable:
		if msg == msgDraining {
			return refDraining
		}
		return refStoreUnavailable
	}
	return refOther
}

// refused counts a refusal with status code and message.
func (s *Server) refused(code int, msg string) {
	s.metrics.refusals[refusalOf(code, msg)].Inc()
}
