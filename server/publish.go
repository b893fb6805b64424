package server

import (
	"encoding/json"
	"io"
	"net/http"
	"unicode/utf8"
	"wall/server/internal/admit"

	"github.com/labstack/echo/v4"
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
	r := c.Request()
	// The JSON body is the publish API's arguments. It is read (bounded)
	// before admission, whose refusals (no API, a wrong token) still come
	// first; what is wrong with the body is said after.
	p, berr := s.readPublish(c)
	src := publishSource{httpSource{r: r}, p.Wall}
	t, aerr := s.admit.Admit(src, admit.Publish)
	if aerr != nil {
		return aerr
	}
	if berr != nil {
		return berr
	}
	body, herr := s.cleanBody(*p.Body)
	if herr != nil {
		return herr
	}
	m, herr := s.publish(r.Context(), t.Wall, body)
	if herr != nil {
		return herr
	}
	return c.Blob(http.StatusOK, jsonType, m.JSON)
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
		return publishRequest{}, echo.NewHTTPError(http.StatusBadRequest, `body must be JSON like {"wall": "main", "body": "text"}`)
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
