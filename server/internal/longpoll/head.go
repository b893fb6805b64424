package longpoll

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/net/http/httpguts"

	"wall/server/internal/form"
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
	fields        string // the header lines, for pollRequest.Header
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
	h.fields = rest
	hosts, lengths := 0, 0
	contentType, host, origin := "", "", ""
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
			host = value
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
		case strings.EqualFold(name, "Origin"):
			if origin != "" {
				return h, false
			}
			origin = value
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
		case strings.EqualFold(name, "Transfer-Encoding"), strings.EqualFold(name, "Expect"),
			strings.EqualFold(name, "Upgrade"):
			return h, false
		}
	}
	if rest != "" || hosts != 1 || lengths > 1 {
		return h, false // bare LFs or something after the empty line
	}
	if origin != "" && !sameHost(origin, host) {
		return h, false // cross-origin: net/http answers it with its CORS headers
	}
	if !h.post {
		return h, h.contentLength == 0
	}
	ct, _, _ := strings.Cut(contentType, ";")
	ct = strings.TrimSpace(ct)
	return h, ct == "" || strings.EqualFold(ct, "application/x-www-form-urlencoded")
}

// sameHost reports whether an Origin header names host (any scheme), as
// the page's own requests do.
func sameHost(origin, host string) bool {
	_, o, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(o, host)
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

// pollRequest is a poll read by the engine, as admission reads it
// (admit.Source): its strings view the read buffer, valid until the
// buffer goes back to its pool. The engine lends one from a pool for each
// Admit (Engine.reqs): admitting a re-poll allocates nothing for it, and
// an idle connection holds none.
type pollRequest struct {
	h    pollHead
	body string
	peer string // the connection's remote address (pollConn.peer)
}

func (r *pollRequest) Method() string {
	if r.h.post {
		return http.MethodPost
	}
	return http.MethodGet
}

// Arg merges the query and the form body the Tornado way: the last value
// of a name wins, and a POST's body comes after its query.
func (r *pollRequest) Arg(name string) (string, bool) {
	v, ok := form.Lookup(r.h.query, name)
	if r.h.post {
		if bv, bok := form.Lookup(r.body, name); bok {
			return bv, true
		}
	}
	return v, ok
}

// Header returns the first value of the named header, as
// http.Header.Get does.
func (r *pollRequest) Header(name string) string {
	rest := r.h.fields
	for rest != "" {
		var line string
		line, rest, _ = strings.Cut(rest, "\r\n")
		k, v, _ := strings.Cut(line, ":")
		if strings.EqualFold(k, name) {
			return strings.Trim(v, " \t")
		}
	}
	return ""
}

// Peer returns the connection's remote address, "host:port".
func (r *pollRequest) Peer() string { return r.peer }

// Cookie returns the first valid cookie called name, as
// http.Request.Cookie does.
func (r *pollRequest) Cookie(name string) (string, bool) {
	return form.FindCookie(r.h.cookies[:r.h.nCookies], name)
}
