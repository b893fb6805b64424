package server

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// args are a request's arguments merged the Tornado way: query first, then
// the form body; for a repeated name the last value wins, so the form wins
// over the query.
type args map[string]string

func (a args) get(name string) (string, bool) {
	v, ok := a[name]
	return v, ok
}

// readArgs parses query and body arguments. The body is read under limit
// bytes; a larger body is a 413. Values are raw bytes (not yet checked for
// UTF-8): the caller decides, as Tornado does, what invalid UTF-8 means for
// each argument.
func readArgs(c echo.Context, limit int64) (args, error) {
	r := c.Request()
	a := args{}
	mergeQuery(a, r.URL.RawQuery)
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		return a, nil
	}
	if r.ContentLength > limit {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, "request body too large")
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded", "":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, bodyError(err)
		}
		mergeQuery(a, string(body))
	case "multipart/form-data":
		if err := r.ParseMultipartForm(limit); err != nil {
			return nil, bodyError(err)
		}
		for k, vs := range r.MultipartForm.Value {
			if len(vs) > 0 {
				a[k] = vs[len(vs)-1]
			}
		}
	default:
		// Tornado ignores other bodies (a JSON body gives "missing
		// argument"); drain it under the limit so keep-alive still works.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return nil, bodyError(err)
		}
	}
	return a, nil
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "request body too large")
	}
	return echo.NewHTTPError(http.StatusBadRequest, "could not read request body")
}

// mergeQuery adds the pairs of a urlencoded string to a, keeping byte values
// as they decode (url.ParseQuery would do, but loses the order that decides
// which repeated value wins). It never fails: like Python's unquote_plus, a
// malformed escape such as "50%" is kept as text.
func mergeQuery(a args, s string) {
	eachPair(s, func(k, v string) { a[unquotePlus(k)] = unquotePlus(v) })
}

// eachPair calls fn with the still encoded name and value of each pair of
// a urlencoded string, in order.
func eachPair(s string, fn func(k, v string)) {
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

// unquotePlus decodes '+' as a space and every valid %XX escape, leaving
// anything else as it is, as Python's urllib.parse.unquote_plus does.
func unquotePlus(s string) string {
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
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
