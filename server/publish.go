package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/wall"
)

// publishRequest is the JSON body of POST /api/publish. Its targets are
// walls by name (wall, walls) and the private walls of audiences, after
// ws4redis: users → user:<name>, groups → group:<name>, sessions →
// session:<sid>, each with ":<facility>" when facility is set.
type publishRequest struct {
	Body     *string  `json:"body"`
	ID       string   `json:"id"`
	Wall     string   `json:"wall"`
	Walls    []string `json:"walls"`
	Users    []string `json:"users"`
	Groups   []string `json:"groups"`
	Sessions []string `json:"sessions"`
	Facility string   `json:"facility"`
}

// maxTargets bounds the walls one publish request may reach: each is one
// trip to the sequencer while the request waits.
const maxTargets = 100

// targeted reports whether the request names targets beyond part 2's
// single wall, which makes its answer a list.
func (p *publishRequest) targeted() bool {
	return p.Walls != nil || p.Users != nil || p.Groups != nil || p.Sessions != nil
}

// targets returns the request's walls in the order named, each once; no
// target at all is the default wall. A name that is not a valid wall
// makes the whole request a 400 before anything is stored.
func (p *publishRequest) targets() ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(kind, name string) error {
		full := name
		if kind != "" {
			if name == "" || strings.Contains(name, ":") {
				return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("bad %s name %.70q", strings.TrimSuffix(kind, ":"), name))
			}
			full = kind + name
			if p.Facility != "" {
				full += ":" + p.Facility
			}
		}
		if !wall.ValidName(full) {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("bad target wall %.70q: %s", full, wall.ErrBadName))
		}
		if !seen[full] {
			seen[full] = true
			out = append(out, full)
		}
		return nil
	}
	if p.Wall != "" {
		if err := add("", p.Wall); err != nil {
			return nil, err
		}
	}
	for _, group := range []struct {
		kind  string
		names []string
	}{{"", p.Walls}, {"user:", p.Users}, {"group:", p.Groups}, {"session:", p.Sessions}} {
		for _, n := range group.names {
			if err := add(group.kind, n); err != nil {
				return nil, err
			}
		}
	}
	switch {
	case len(out) > maxTargets:
		return nil, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("more than %d targets", maxTargets))
	case len(out) == 0 && p.Facility != "":
		return nil, echo.NewHTTPError(http.StatusBadRequest, `"facility" needs users, groups or sessions`)
	case len(out) == 0:
		out = append(out, wall.DefaultWall)
	}
	return out, nil
}

// publishTarget is one target's line in a targeted publish's answer.
type publishTarget struct {
	Wall string `json:"wall"`
	ID   string `json:"id"`
	Seq  uint64 `json:"seq"`
}

// handlePublish serves POST /api/publish for backends, with
// "Authorization: Bearer <publish token>". A request with one wall (or
// none: the default wall) is answered with the stored message, as in part
// 2; a targeted one with {"messages": [{"wall", "id", "seq"}, ...]}, one
// per target. Every target goes through admission and the same sequencer
// as every post. With an id, a retry stores nothing on the walls that
// hold it already; without one, all targets get the same new id.
func (s *Server) handlePublish(c echo.Context) error {
	r := c.Request()
	// The JSON body is the publish API's arguments. It is read (bounded)
	// before admission, whose refusals (no API, a wrong token) still come
	// first; what is wrong with the body is said after.
	p, berr := s.readPublish(c)
	if _, aerr := s.admit.Admit(publishSource{httpSource{r: r}, p.Wall}, admit.Publish); aerr != nil {
		return aerr
	}
	if berr != nil {
		return berr
	}
	targets, err := p.targets()
	if err != nil {
		return err
	}
	for _, name := range targets { // every target admitted before any is stored
		if _, aerr := s.admit.Admit(publishSource{httpSource{r: r}, name}, admit.Publish); aerr != nil {
			return aerr
		}
	}
	if herr := checkID(p.ID); herr != nil {
		return herr
	}
	body, herr := s.cleanBody(*p.Body)
	if herr != nil {
		return herr
	}
	if p.ID == "" {
		p.ID = uuid.NewString()
	}
	if !p.targeted() {
		m, _, herr := s.publish(r.Context(), wall.Post{Wall: targets[0], ID: p.ID, Body: body})
		if herr != nil {
			return herr
		}
		return c.Blob(http.StatusOK, jsonType, m.JSON)
	}
	var answer struct {
		Error    string          `json:"error,omitempty"`
		Messages []publishTarget `json:"messages"`
	}
	answer.Messages = make([]publishTarget, 0, len(targets))
	for _, name := range targets {
		m, _, herr := s.publish(r.Context(), wall.Post{Wall: name, ID: p.ID, Body: body})
		if herr != nil {
			// What was stored stays listed: a retry with the same id
			// stores the rest and nothing twice.
			answer.Error = herr.Message.(string)
			return c.JSON(herr.Code, answer)
		}
		answer.Messages = append(answer.Messages, publishTarget{Wall: name, ID: m.ID, Seq: m.Seq})
	}
	return c.JSON(http.StatusOK, answer)
}

// readPublish reads and decodes the JSON body of a publish request.
func (s *Server) readPublish(c echo.Context) (publishRequest, error) {
	var p publishRequest
	r := c.Request()
	data, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, int64(s.cfg.BodyLimit)*6+frameOverhead))
	if err != nil {
		return p, bodyError(err) // the read deadline stays: see readArgs
	}
	doneReading(c)
	// encoding/json would silently replace invalid UTF-8; refuse it instead.
	if !utf8.Valid(data) {
		return p, echo.NewHTTPError(http.StatusBadRequest, "Invalid unicode in body")
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return publishRequest{}, echo.NewHTTPError(http.StatusBadRequest, `body must be JSON like {"wall": "main", "body": "text"} or {"users": ["mary"], "body": "text"}`)
	}
	if p.Body == nil {
		return p, echo.NewHTTPError(http.StatusBadRequest, `missing "body"`)
	}
	return p, nil
}

// publishSource presents a publish request to admission: its wall comes
// from the JSON body.
type publishSource struct {
	httpSource
	wall string
}

func (p publishSource) Arg(name string) (string, bool) {
	if name == "wall" {
		return p.wall, p.wall != ""
	}
	return "", false
}
