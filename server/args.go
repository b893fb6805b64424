package server

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"wall/server/internal/form"
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
	if err := readBody(r, a, limit); err != nil {
		// The read deadline stays: net/http then gives up on the rest of
		// the body at once and closes the connection after the answer.
		return nil, err
	}
	doneReading(c)
	return a, nil
}

// readBody merges a request's form body into a.
func readBody(r *http.Request, a args, limit int64) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded", "":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return bodyError(err)
		}
		mergeQuery(a, string(body))
	case "multipart/form-data":
		if err := r.ParseMultipartForm(limit); err != nil {
			return bodyError(err)
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
			return bodyError(err)
		}
	}
	return nil
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
// which repeated value wins). It never fails: see form.Unquote.
func mergeQuery(a args, s string) {
	form.EachPair(s, func(k, v string) { a[form.Unquote(k)] = form.Unquote(v) })
}
