package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"wall/server/internal/admit"
	"wall/wall"
)

// netHTTPPollArgs is what handleUpdates makes of a poll request: net/http
// parses it, readArgs merges its arguments, and the one admission function
// admits it. ok is false for anything that gets an error answer.
func netHTTPPollArgs(ad *admit.Admitter, req []byte) (name string, cursor wall.Cursor, ok bool) {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
	if err != nil {
		return "", cursor, false
	}
	a := args{}
	mergeQuery(a, r.URL.RawQuery)
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return "", cursor, false
		}
		mergeQuery(a, string(body))
	}
	t, aerr := ad.Admit(httpSource{r, a}, admit.Poll)
	return t.Wall, t.Cursor, aerr == nil
}

// The engine reads a poll's arguments, XSRF check included, as the
// net/http handler does, on any query, form, cookies and token header.
func FuzzPollArgs(f *testing.F) {
	tok := testXSRF
	for _, s := range [][5]string{
		{"cursor=1", "", "", "", ""},
		{"wall=a&cursor=2", "cursor=3&_xsrf=" + tok, "_xsrf=" + tok, "", ""},
		{"wall=a", "wall=&_xsrf=" + tok, "x=1; _xsrf=" + tok, "y=2", ""},
		{"c%75rsor=4&wall=b+c", "wall=%62", "_xsrf=" + tok, "", tok},
		{"wall=" + strings.Repeat("w", 70), "_xsrf=", "_xsrf=" + tok, "", tok},
		{"cursor=3f2a8c1e-5b7d-4e9a-8c6f-1d2e3f4a5b6c", "_xsrf=2|00|ff|1", "_xsrf=other", "", ""},
		{"cursor=%zz&&=&wall", "_xsrf=" + tok + "&_xsrf=bad", "_xsrf=\"" + tok + "\"", "", ""},
	} {
		f.Add(false, s[0], s[1], s[2], s[3], s[4])
		f.Add(true, s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, post bool, query, form, cookie1, cookie2, header string) {
		var b strings.Builder
		method := "GET"
		if post {
			method = "POST"
		}
		fmt.Fprintf(&b, "%s /a/message/updates?%s HTTP/1.1\r\nHost: x\r\n", method, query)
		for _, c := range []string{cookie1, cookie2} {
			if c != "" {
				fmt.Fprintf(&b, "Cookie: %s\r\n", c)
			}
		}
		if header != "" {
			fmt.Fprintf(&b, "X-Xsrftoken: %s\r\n", header)
		}
		if post {
			fmt.Fprintf(&b, "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(form), form)
		} else {
			b.WriteString("\r\n")
		}
		req := []byte(b.String())
		n := headEnd(req)
		if n < 0 {
			return
		}
		h, accepted := parsePollHead(req[:n])
		if !accepted || n+h.contentLength != len(req) {
			return // net/http serves it
		}
		ad := admit.New(admit.Config{})
		tk, aerr := ad.Admit(&pollRequest{h, viewString(req[n:])}, admit.Poll)
		name, cursor, ok := strings.Clone(tk.Wall), tk.Cursor, aerr == nil // the name views the buffer (start clones it)...
		clear(req)                                                         // ...the cursor must not
		wantName, wantCursor, wantOK := netHTTPPollArgs(ad, []byte(b.String()))
		if ok != wantOK || (ok && (name != wantName || cursor != wantCursor)) {
			t.Errorf("%q:\nengine   %q %+v %v\nnet/http %q %+v %v", b.String(), name, cursor, ok, wantName, wantCursor, wantOK)
		}
	})
}

// A head with more Cookie lines than the engine keeps goes to net/http.
func TestParsePollHeadManyCookies(t *testing.T) {
	head := "GET /a/message/updates HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("Cookie: a=1\r\n", maxCookieLines)
	if h, ok := parsePollHead([]byte(head + "\r\n")); !ok || h.nCookies != maxCookieLines {
		t.Fatalf("%d Cookie lines refused", maxCookieLines)
	}
	if _, ok := parsePollHead([]byte(head + "Cookie: a=1\r\n\r\n")); ok {
		t.Fatalf("%d Cookie lines accepted", maxCookieLines+1)
	}
}
