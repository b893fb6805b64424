// Package form reads urlencoded arguments and cookies the way Tornado and
// net/http do, without building maps: the request admission of the HTTP
// handlers and of the long-poll engine share it.
package form

import (
	"net/textproto"
	"net/url"
	"strings"
)

// EachPair calls fn with the still encoded name and value of each pair of
// a urlencoded string, in order.
func EachPair(s string, fn func(k, v string)) {
	for s != "" {
		var kv string
		kv, s, _ = strings.Cut(s, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		fn(k, v)
	}
}

// Lookup returns the decoded value of the last pair called name in the
// urlencoded string s (Tornado: the last value wins), and whether there
// is one. It allocates only to decode an escaped value.
func Lookup(s, name string) (v string, ok bool) {
	EachPair(s, func(k, val string) {
		if Unquote(k) == name {
			v, ok = val, true
		}
	})
	if ok {
		v = Unquote(v)
	}
	return v, ok
}

// Unquote decodes '+' as a space and every valid %XX escape, leaving
// anything else as it is, as Python's urllib.parse.unquote_plus does (a
// malformed escape such as "50%" is kept as text).
func Unquote(s string) string {
	i := 0
	for i < len(s) && s[i] != '+' && s[i] != '%' {
		i++
	}
	if i == len(s) {
		return s // the usual case: nothing to decode, nothing to copy
	}
	if v, err := url.QueryUnescape(s); err == nil {
		return v
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s):
			if v, ok := Unhex(s[i+1], s[i+2]); ok {
				b = append(b, v)
				i += 2
				continue
			}
			b = append(b, c)
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// Unhex decodes two hex digits.
func Unhex(hi, lo byte) (byte, bool) {
	h, ok1 := unhex(hi)
	l, ok2 := unhex(lo)
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// maxCookies is net/http's default limit (GODEBUG httpcookiemaxnum): a
// request with more cookies has none.
const maxCookies = 3000

// FindCookie returns the value of the first valid cookie called name in
// Cookie header lines, as http.Request.Cookie finds it, without
// allocating.
func FindCookie(lines []string, name string) (string, bool) {
	n := 0
	for _, line := range lines {
		n += strings.Count(line, ";") + 1
	}
	if n > maxCookies {
		return "", false
	}
	for _, line := range lines {
		line = textproto.TrimString(line)
		var part string
		for len(line) > 0 {
			part, line, _ = strings.Cut(line, ";")
			part = textproto.TrimString(part)
			k, v, _ := strings.Cut(part, "=")
			if textproto.TrimString(k) != name { // name is a valid token
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if validCookieValue(v) {
				return v, true
			}
		}
	}
	return "", false
}

// validCookieValue is net/http's rule for a cookie value's bytes.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}
