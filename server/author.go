package server

import (
	"strings"

	"wall/server/internal/admit"
)

// author is the user a post of an admitted request is signed with.
func author(t admit.Ticket) string { return "" }

// logName is a wall's name as logs at info level and above show it: the
// owner part of a private wall's name (user:<sub>, group:<name>,
// session:<sid>) is personal data, so only the prefix is kept.
func (s *Server) logName(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i+1] + "…"
	}
	return name
}
