package server

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/wall"
)

// pages renders the wall page from the embedded templates.
type pages struct {
	tmpl    *template.Template
	version map[string]string // asset name → sha512 hex, the ?v= cache-buster
	// importMap maps every module's plain URL to its hashed one, so the
	// modules the page script imports are cached as immutably as it is.
	importMap template.HTML
}

// pageData is what views/index.html is executed with.
type pageData struct {
	Wall     string          // wall name ("main" for /)
	Default  bool            // true on the default wall's page "/"
	Messages []template.HTML // cached messages' html fragments, oldest first
	// Meta holds, for each message in Messages, what its fragment does
	// not show: [user or null, time in ms or null].
	Meta      [][2]any
	XSRF      string // value for the hidden _xsrf field
	Next      string // request path, for the hidden next field
	Last      string // cursor after the newest message on the page ("<seq>.<epoch>"): the client's first cursor
	Keep      int    // messages the page keeps shown: the cache size
	BodyLimit int    // bytes a body may have
	// DeadAfter (ms) is how long the page's client lets a stream be
	// silent before it counts the server as gone: longer than the
	// longest gap between two heartbeats, a ping period and a tick.
	DeadAfter   int64
	PollTimeout int64   // ms a poll may be held before the client gives up on it
	Denied      *denied // the wall may not be read: the page says so and does not connect
	User        string  // who the browser is signed in as (its token's sub), if anyone
	ImportMap   template.HTML
	Static      func(name string) string
}

// denied is a refusal (401/403) shown on the page of the wall refused.
type denied struct {
	Status  int
	Message string // the server's reason
	Explain string // what it means for the reader
}

func newPages(views, assets fs.FS) (*pages, error) {
	tmpl, err := template.ParseFS(views, "*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{tmpl: tmpl, version: map[string]string{}}
	imports := map[string]string{}
	err = fs.WalkDir(assets, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, name)
		if err != nil {
			return err
		}
		sum := sha512.Sum512(b)
		p.version[name] = hex.EncodeToString(sum[:])
		if path.Ext(name) == ".js" {
			imports["/static/"+name] = p.static(name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// json.Marshal escapes <, > and &, so the map cannot end its script
	// element; the names are the embedded files' own.
	m, err := json.Marshal(map[string]any{"imports": imports})
	p.importMap = template.HTML(m)
	return p, err
}

// static returns the URL of an asset with its content hash, so browsers
// may cache it forever.
func (p *pages) static(name string) string {
	return "/static/" + name + "?v=" + p.version[name]
}

// handlePage serves GET / (the default wall) and GET /w/:wall.
func (s *Server) handlePage(c echo.Context) error {
	// The wall comes from the path, not the arguments; a token may come
	// as the token argument (a sign-in link), as on every path.
	a := args{}
	if p := c.Param("wall"); p != "" {
		a["wall"] = p
	}
	if tok := c.QueryParam("token"); tok != "" {
		a["token"] = tok
	}
	t, aerr := s.admit.Admit(httpSource{c.Request(), a}, admit.Page)
	def := c.Param("wall") == ""
	if aerr != nil {
		if aerr.Status != http.StatusUnauthorized && aerr.Status != http.StatusForbidden || !wantsHTML(c.Request()) {
			return aerr
		}
		// A wall this browser may not read: its page, empty, says so.
		if aerr.Status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="wall"`)
		}
		return s.renderPage(c, aerr.Status, s.pageFor(c, a["wall"], def, &denied{
			Status: aerr.Status, Message: aerr.Message, Explain: deniedExplain(aerr.Status),
		}))
	}
	name := t.Wall
	w := s.hub.Acquire(name)
	s.sync(c.Request().Context(), w, wall.Cursor{})
	msgs, cursor := w.Snapshot()
	s.hub.Release(w)

	data := s.pageFor(c, name, def, nil)
	data.User = t.Who.Sub
	data.Messages = make([]template.HTML, len(msgs))
	data.Meta = make([][2]any, len(msgs))
	for i, m := range msgs {
		// The fragment was escaped and linkified when the message entered.
		data.Messages[i] = template.HTML(m.HTML)
		data.Meta[i] = messageMeta(m.JSON)
	}
	data.Last = cursor.String()
	return s.renderPage(c, http.StatusOK, data)
}

// pageFor returns the page data of wall name, without its messages.
func (s *Server) pageFor(c echo.Context, name string, def bool, d *denied) pageData {
	if name == "" {
		name = wall.DefaultWall
	}
	ping := s.cfg.PingInterval
	return pageData{
		Wall:        name,
		Default:     def,
		Meta:        [][2]any{},
		XSRF:        admit.EncodeXSRF(admit.XSRFToken(c.Response(), c.Request())),
		Next:        c.Request().URL.Path,
		Keep:        s.hub.CacheSize(),
		BodyLimit:   s.cfg.BodyLimit,
		DeadAfter:   max(ping*8/5, ping+2*time.Second).Milliseconds(),
		PollTimeout: (s.cfg.PollTimeout + pollSlack).Milliseconds(),
		Denied:      d,
		ImportMap:   s.pages.importMap,
		Static:      s.pages.static,
	}
}

// pollSlack is how much longer than the server's poll timeout the page's
// client waits for a poll's answer before it takes the server for gone.
const pollSlack = 10 * time.Second

// renderPage writes the wall page with status code.
func (s *Server) renderPage(c echo.Context, code int, data pageData) error {
	var buf bytes.Buffer
	if err := s.pages.tmpl.ExecuteTemplate(&buf, "index.html", data); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(code, buf.Bytes())
}

// messageMeta returns the author and time of a message from its JSON (the
// keys "user" and "time", absent on anonymous or older messages).
func messageMeta(b []byte) [2]any {
	var m struct {
		User *string `json:"user"`
		Time *int64  `json:"time"`
	}
	var meta [2]any
	if json.Unmarshal(b, &m) == nil {
		if m.User != nil {
			meta[0] = *m.User
		}
		if m.Time != nil {
			meta[1] = *m.Time
		}
	}
	return meta
}

// deniedExplain says what a refused page means for its reader.
func deniedExplain(status int) string {
	if status == http.StatusUnauthorized {
		return "Not allowed: this wall needs you to sign in."
	}
	return "Not allowed: this wall is private, and you are not one of its readers."
}
