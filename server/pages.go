package server

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/wall"
)

// pages renders the wall page from the embedded templates.
type pages struct {
	tmpl    *template.Template
	version map[string]string // asset name → sha512 hex, the ?v= cache-buster
}

// pageData is what views/index.html is executed with.
type pageData struct {
	Wall     string          // wall name ("main" for /)
	Default  bool            // true on the default wall's page "/"
	Messages []template.HTML // cached messages' html fragments, oldest first
	XSRF     string          // value for the hidden _xsrf field
	Next     string          // request path, for the hidden next field
	Last     string          // cursor after the newest message on the page ("<seq>.<epoch>"): the client's first cursor
	Static   func(name string) string
}

func newPages(views, assets fs.FS) (*pages, error) {
	tmpl, err := template.ParseFS(views, "*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{tmpl: tmpl, version: map[string]string{}}
	err = fs.WalkDir(assets, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, path)
		if err != nil {
			return err
		}
		sum := sha512.Sum512(b)
		p.version[path] = hex.EncodeToString(sum[:])
		return nil
	})
	return p, err
}

// static returns the URL of an asset with its content hash, so browsers
// may cache it forever.
func (p *pages) static(name string) string {
	return "/static/" + name + "?v=" + p.version[name]
}

// handlePage serves GET / (the default wall) and GET /w/:wall.
func (s *Server) handlePage(c echo.Context) error {
	// The wall comes from the path, not the arguments.
	a := args{}
	if p := c.Param("wall"); p != "" {
		a["wall"] = p
	}
	t, aerr := s.admit.Admit(httpSource{c.Request(), a}, admit.Page)
	if aerr != nil {
		return aerr
	}
	name := t.Wall
	def := c.Param("wall") == ""
	w := s.hub.Acquire(name)
	s.sync(c.Request().Context(), w, wall.Cursor{})
	msgs, cursor := w.Snapshot()
	s.hub.Release(w)

	data := pageData{
		Wall:     name,
		Default:  def,
		Messages: make([]template.HTML, len(msgs)),
		XSRF:     admit.EncodeXSRF(admit.XSRFToken(c.Response(), c.Request())),
		Next:     c.Request().URL.Path,
		Static:   s.pages.static,
	}
	for i, m := range msgs {
		// The fragment was escaped and linkified when the message entered.
		data.Messages[i] = template.HTML(m.HTML)
	}
	data.Last = cursor.String()
	var buf bytes.Buffer
	if err := s.pages.tmpl.ExecuteTemplate(&buf, "index.html", data); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}
