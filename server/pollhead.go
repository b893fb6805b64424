package server

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/net/http/httpguts"

	"wall/server/internal/form"
	"wall/wall"
)

// headEnd returns the length of the request head at the start of b
// (through its empty line), or -1 if b holds no complete head.
func headEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 {
		if j := bytes.Index(b[:i+1], []byte("\n\n")); j >= 0 {
			return j + 2 // bare LFs: parsePollHead refuses it
		}
		return i + 3
	}
	if j := bytes.Index(b, []byte("\n\n")); j >= 0 {
		return j + 2
	}
	return -1
}

// maxCookieLines bounds the Cookie header lines the engine keeps: a head
// with more goes to net/http.
const maxCookieLines = 8

// pollHead is what the engine needs of a poll request's head. Its strings
// view the buffer the head was read into (parsing copies nothing): they
// are valid only until that buffer goes back to its pool, and what
// outlives it is cloned (the cursor's id in pollArgs, a new wall's name in
// start).
type pollHead struct {
	post          bool
	query         string
	contentLength int
	close         bool
	cookies       [maxCookieLines]string
	nCookies      int
	xsrfHeader    string // X-XSRFToken
	csrfHeader    string // X-CSRFToken
}

// viewString is b as a string without a copy; b must not change while
// the string is in use.
func viewString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// parsePollHead parses a request head that the engine may serve: GET or
// POST /a/message/updates over HTTP/1.1, with a Host, no chunked body, no
// Expect, no Upgrade, and a POST body that is a urlencoded form. It is
// strict: anything it does not accept goes back to net/http.
func parsePollHead(b []byte) (h pollHead, ok bool) {
	line, rest, _ := strings.Cut(viewString(b), "\r\n")
	method, line, _ := strings.Cut(line, " ")
	target, proto, _ := strings.Cut(line, " ")
	switch {
	case proto != "HTTP/1.1":
		return h, false
	case method == http.MethodPost:
		h.post = true
	case method != http.MethodGet:
		return h, false
	}
	path, query, _ := strings.Cut(target, "?")
	if path != "/a/message/updates" || hasCTL(query) {
		return h, false
	}
	h.query = query
	hosts, lengths := 0, 0
	contentType := ""
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		name, value, found := strings.Cut(line, ":")
		if !found || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return h, false
		}
		value = strings.Trim(value, " \t")
		switch {
		case strings.EqualFold(name, "Host"):
			if !httpguts.ValidHostHeader(value) {
				return h, false
			}
			hosts++
		case strings.EqualFold(name, "Content-Length"):
			lengths++
			// ParseUint takes digits only: no sign, no spaces.
			n, err := strconv.ParseUint(value, 10, 31)
			if err != nil {
				return h, false
			}
			h.contentLength = int(n)
		case strings.EqualFold(name, "Content-Type"):
			contentType = value
		case strings.EqualFold(name, "Connection"):
			for value != "" {
				var tok string
				tok, value, _ = strings.Cut(value, ",")
				switch tok = strings.TrimSpace(tok); {
				case strings.EqualFold(tok, "close"):
					h.close = true
				case strings.EqualFold(tok, "upgrade"):
					return h, false
				}
			}
		case strings.EqualFold(name, "Cookie"):
			if h.nCookies == maxCookieLines {
				return h, false
			}
			h.cookies[h.nCookies] = value
			h.nCookies++
		case strings.EqualFold(name, "X-Xsrftoken"):
			if h.xsrfHeader == "" {
				h.xsrfHeader = value
			}
		case strings.EqualFold(name, "X-Csrftoken"):
			if h.csrfHeader == "" {
				h.csrfHeader = value
			}
		case strings.EqualFold(name, "Transfer-Encoding"), strings.EqualFold(name, "Expect"),
			strings.EqualFold(name, "Upgrade"):
			return h, false
		}
	}
	if rest != "" || hosts != 1 || lengths > 1 {
		return h, false // bare LFs or something after the empty line
	}
	if !h.post {
		return h, h.contentLength == 0
	}
	ct, _, _ := strings.Cut(contentType, ";")
	ct = strings.TrimSpace(ct)
	return h, ct == "" || strings.EqualFold(ct, "application/x-www-form-urlencoded")
}

// hasCTL reports whether s has a control character, which net/http
// refuses in a request's target (url.ParseRequestURI).
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// pollQuery holds the arguments a poll uses, merged the Tornado way as
// args are (the last value of a name wins), without building the map.
type pollQuery struct {
	wall, cursor, xsrf string
	hasWall            bool
}

// merge adds the pairs of a urlencoded string, as mergeQuery does.
func (q *pollQuery) merge(s string) {
	form.EachPair(s, func(k, v string) {
		switch form.Unquote(k) {
		case "wall":
			q.wall, q.hasWall = form.Unquote(v), true
		case "cursor":
			q.cursor = form.Unquote(v)
		case "_xsrf":
			q.xsrf = form.Unquote(v)
		}
	})
}

// pollArgs reads the poll's arguments the Tornado way (query, then form
// body; then checkXSRF's rule for a POST), the same rules as
// handleUpdates. ok is false for anything that needs an error answer:
// net/http gives it. The name views the buffer; the cursor does not.
func (h *pollHead) pollArgs(body []byte) (name string, cursor wall.Cursor, ok bool) {
	var q pollQuery
	q.merge(h.query)
	if h.post {
		q.merge(viewString(body))
		cookie, ok := form.FindCookie(h.cookies[:h.nCookies], xsrfCookie)
		if matchXSRF(q.xsrf, h.xsrfHeader, h.csrfHeader, cookie, ok) != "" {
			return "", cursor, false
		}
	}
	name = q.wall
	if !q.hasWall || name == "" {
		name = wall.DefaultWall
	} else if !wall.ValidName(name) {
		return "", cursor, false
	}
	cursor, err := wall.ParseCursor(q.cursor)
	cursor.ID = strings.Clone(cursor.ID) // kept while the poll waits
	return name, cursor, err == nil
}
