package server

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/wall"
)

// Browsers without JavaScript post the page's form and load pages
// themselves: their errors are answered as a readable page (with the
// same status) rather than the JSON that scripts read. A refused post's
// page keeps the text that was typed, in a form that posts it again.
// Scripts (fetch, jQuery's XHR, legacy chat.js) keep getting JSON.

// formTextKey is the echo context key of a form post's captured body.
const formTextKey = "wall.formText"

// wantsHTML reports whether a request comes from a browser navigating
// (a page load or a form post without JavaScript) rather than from a
// script.
func wantsHTML(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" {
		return false // jQuery and other XHR clients
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// isFormPost reports whether r is a browser's own post of the page's form.
func isFormPost(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/a/message/new" && wantsHTML(r)
}

// keepFormText is middleware: it keeps a copy of what a browser's form
// post reads of its body (up to the post's own limit), so that a refusal
// can give the text back.
func (s *Server) keepFormText(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if r := c.Request(); isFormPost(r) && r.Body != nil && r.Body != http.NoBody {
			fc := &formCapture{ReadCloser: r.Body, max: int(s.requestLimit())}
			r.Body = fc
			c.Set(formTextKey, fc)
		}
		return next(c)
	}
}

// formCapture copies what is read through it, up to max bytes.
type formCapture struct {
	io.ReadCloser
	buf []byte
	max int
}

func (f *formCapture) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if room := f.max - len(f.buf); room > 0 {
		f.buf = append(f.buf, p[:min(n, room)]...)
	}
	return n, err
}

// errorPage is what views/error.html is executed with.
type errorPage struct {
	Title, Explain, Message string
	Status                  int
	Wall                    string // "" for the default wall
	WallField               bool
	Form                    bool // a refused post: its text is offered again
	Body, Next, XSRF, Back  string
	Static                  func(name string) string
}

// htmlError answers err as a page if the request is a browser's page
// load or form post, and reports whether it did.
func (s *Server) htmlError(c echo.Context, code int, msg string) bool {
	r := c.Request()
	page := r.Method == http.MethodGet && (r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/w/"))
	if !(page || isFormPost(r)) || !wantsHTML(r) {
		return false
	}
	d := errorPage{Status: code, Message: msg, Back: "/", Static: s.pages.static}
	if page {
		d.Title = "No such wall"
		d.Explain = "This address does not name a wall: names are at most 64 letters, digits and - _ . : ~."
		if code != http.StatusBadRequest {
			d.Title, d.Explain = "Page not available", "The wall could not be shown. Try again in a moment."
		}
	} else {
		a := s.capturedForm(c)
		d.Form = true
		d.Body = strings.ToValidUTF8(a["body"], "\uFFFD")
		if name := a["wall"]; name != "" && name != wall.DefaultWall && wall.ValidName(name) {
			d.Wall, d.WallField, d.Back = name, true, "/w/"+name
		}
		if next := a["next"]; next != "" && safeNext(next) {
			d.Back = next
		}
		d.Next = d.Back
		d.XSRF = admit.EncodeXSRF(admit.XSRFToken(c.Response(), r))
		_, hadCookie := httpSource{r: r}.Cookie(admit.XSRFCookie)
		d.Title, d.Explain = s.postRefusal(code, msg, len(d.Body), hadCookie)
	}
	var buf bytes.Buffer
	if err := s.pages.tmpl.ExecuteTemplate(&buf, "error.html", d); err != nil {
		s.log.Error("rendering the error page", "err", err)
		return false
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	if err := c.HTMLBlob(code, buf.Bytes()); err != nil {
		s.log.Debug("writing error page", "err", err)
	}
	return true
}

// capturedForm returns the arguments of a form post as far as they were
// read: the query, then the captured body.
func (s *Server) capturedForm(c echo.Context) args {
	r := c.Request()
	a := args{}
	mergeQuery(a, r.URL.RawQuery)
	if r.MultipartForm != nil {
		for k, vs := range r.MultipartForm.Value {
			if len(vs) > 0 {
				a[k] = vs[len(vs)-1]
			}
		}
	} else if fc, ok := c.Get(formTextKey).(*formCapture); ok {
		mergeQuery(a, string(fc.buf))
	}
	return a
}

// postRefusal returns the title and explanation of a refused form post.
func (s *Server) postRefusal(code int, msg string, size int, hadCookie bool) (title, explain string) {
	switch {
	case code == http.StatusForbidden && (strings.Contains(msg, "XSRF") || strings.Contains(msg, "_xsrf")):
		if !hadCookie {
			return "Cookies are blocked", "Your browser did not send this site's cookie with the form, " +
				"so the post could not be checked. Allow cookies for this site, then post again."
		}
		return "The form had expired", "The form was older than your browser's cookie for this site. Post again."
	case code == http.StatusRequestEntityTooLarge:
		return "Message too long", "A message may have at most " + strconv.Itoa(s.cfg.BodyLimit) +
			" bytes; yours has about " + strconv.Itoa(size) + ". Shorten it and post again."
	case code == http.StatusUnauthorized:
		return "Sign in to post", "This wall takes posts only from signed-in people."
	case code == http.StatusForbidden:
		return "Not allowed", "You may not post to this wall."
	case code >= 500:
		return "Not posted", "The server could not store your message just now. Post again in a moment."
	}
	return "Not posted", "The server refused the message."
}
