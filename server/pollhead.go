package server

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"

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

// pollHead is what the engine needs of a poll request's head.
type pollHead struct {
	post          bool
	query         string
	contentLength int
	close         bool
	cookies       []string
	xsrfHeader    string // X-XSRFToken
	csrfHeader    string // X-CSRFToken
}

// parsePollHead parses a request head that the engine may serve: GET or
// POST /a/message/updates over HTTP/1.1, with a Host, no chunked body, no
// Expect, no Upgrade, and a POST body that is a urlencoded form. It is
// strict: anything it does not accept goes back to net/http.
func parsePollHead(b []byte) (h pollHead, ok bool) {
	head := string(b)
	line, rest, _ := strings.Cut(head, "\r\n")
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
	if path != "/a/message/updates" {
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
		if !found || !validHeaderName(name) || !validHeaderValue(value) {
			return h, false
		}
		value = strings.Trim(value, " \t")
		switch {
		case strings.EqualFold(name, "Host"):
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
			for _, tok := range strings.Split(value, ",") {
				switch tok = strings.TrimSpace(tok); {
				case strings.EqualFold(tok, "close"):
					h.close = true
				case strings.EqualFold(tok, "upgrade"):
					return h, false
				}
			}
		case strings.EqualFold(name, "Cookie"):
			h.cookies = append(h.cookies, value)
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

// pollArgs reads the poll's arguments the Tornado way (mergeQuery, then
// checkXSRF for a POST), the same rules as handleUpdates. ok is false for
// anything that needs an error answer: net/http gives it.
func (h *pollHead) pollArgs(body []byte) (name string, cursor wall.Cursor, ok bool) {
	a := args{}
	mergeQuery(a, h.query)
	if h.post {
		mergeQuery(a, string(body))
		cookie, ok := findCookie(h.cookies, xsrfCookie)
		if matchXSRF(a, h.xsrfHeader, h.csrfHeader, cookie, ok) != "" {
			return "", cursor, false
		}
	}
	name, herr := wallArg(a)
	if herr != nil {
		return "", cursor, false
	}
	raw, _ := a.get("cursor")
	cursor, err := wall.ParseCursor(raw)
	return name, cursor, err == nil
}

// validHeaderName reports whether s is a non-empty token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
