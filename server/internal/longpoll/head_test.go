package longpoll

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"wall/server/internal/admit"
	"wall/server/internal/form"
	"wall/wall"
)

// testXSRF is a valid version-2 XSRF token.
var testXSRF = admit.EncodeXSRF([]byte("0123456789abcdef"))

// httpSource is a request read by net/http with its arguments merged the
// Tornado way, as the server's handlers present it to admission (the
// server's readArgs and httpSource, for a urlencoded body).
type httpSource struct {
	r *http.Request
	a map[string]string
}

func (h httpSource) Method() string                 { return h.r.Method }
func (h httpSource) Header(name string) string      { return h.r.Header.Get(name) }
func (h httpSource) Peer() string                   { return h.r.RemoteAddr }
func (h httpSource) Arg(name string) (string, bool) { v, ok := h.a[name]; return v, ok }

func (h httpSource) Cookie(name string) (string, bool) {
	c, err := h.r.Cookie(name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

func mergeQuery(a map[string]string, s string) {
	form.EachPair(s, func(k, v string) { a[form.Unquote(k)] = form.Unquote(v) })
}

// netHTTPPollArgs is what the server's handleUpdates makes of a poll
// request: net/http parses it, its arguments are merged, and the one
// admission function admits it. ok is false for anything that gets an
// error answer.
func netHTTPPollArgs(ad *admit.Admitter, req []byte) (name string, cursor wall.Cursor, ok bool) {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
	if err != nil {
		return "", cursor, false
	}
	a := map[string]string{}
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

// getPoll is a GET poll request.
func getPoll(query string, extra ...string) string {
	return "GET /a/message/updates?" + query + " HTTP/1.1\r\nHost: x\r\n" + strings.Join(extra, "") + "\r\n"
}

// postPoll is a POST poll request with the test XSRF cookie and field.
func postPoll(f url.Values, extra ...string) string {
	f.Set("_xsrf", testXSRF)
	body := f.Encode()
	return fmt.Sprintf("POST /a/message/updates HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=%s\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n%s\r\n%s",
		testXSRF, len(body), strings.Join(extra, ""), body)
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
		tk, aerr := ad.Admit(&pollRequest{h: h, body: viewString(req[n:])}, admit.Poll)
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

// The engine's head parser refuses what it does not serve.
func TestParsePollHead(t *testing.T) {
	ok := []string{
		"GET /a/message/updates?cursor=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nhost: x\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"POST /a/message/updates HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded; charset=UTF-8\r\nContent-Length: 5\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nHost: x:8080\r\nOrigin: https://X:8080\r\n\r\n", // the page's own
	}
	bad := []string{
		"GET /a/message/updates HTTP/1.0\r\nHost: x\r\n\r\n",
		"GET /a/message/new HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /a/message/updates HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
		"POST /a/message/updates HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /a/message/updates HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
		"POST /a/message/updates HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"POST /a/message/updates HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
		"POST /a/message/updates HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nHost x\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nHo st: x\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nHost: x\x01\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\nHost: x\n\n",
		// Cross-origin: net/http answers with the CORS headers.
		"GET /a/message/updates HTTP/1.1\r\nHost: x\r\nOrigin: https://other\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nHost: x\r\nOrigin: null\r\n\r\n",
		"GET /a/message/updates HTTP/1.1\r\nHost: x\r\nOrigin: https://x\r\nOrigin: https://other\r\n\r\n",
		"",
		"GET",
	}
	for _, s := range ok {
		if n := headEnd([]byte(s)); n != len(s) {
			t.Errorf("headEnd %q = %d", s, n)
		}
		if _, good := parsePollHead([]byte(s)); !good {
			t.Errorf("refused %q", s)
		}
	}
	for _, s := range bad {
		if _, good := parsePollHead([]byte(s)); good {
			t.Errorf("accepted %q", s)
		}
	}
}

// FuzzParsePollHead checks that no input makes the parser panic.
func FuzzParsePollHead(f *testing.F) {
	f.Add([]byte("GET /a/message/updates?cursor=1 HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := headEnd(b); n >= 0 {
			parsePollHead(b[:n])
		}
		parsePollHead(b)
	})
}

// BenchmarkPollHead is the engine's parse of a legacy re-poll, as
// wallbench's longpoll-tornado client sends it: head, arguments and, for
// a POST, the XSRF check.
func BenchmarkPollHead(b *testing.B) {
	const cursor = "3f2a8c1e-5b7d-4e9a-8c6f-1d2e3f4a5b6c"
	agent := "User-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n"
	for _, tc := range []struct{ name, req string }{
		{"GET", getPoll("wall=bench&cursor="+cursor, agent)},
		{"POST", postPoll(url.Values{"cursor": {cursor}, "wall": {"bench"}}, agent)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := []byte(tc.req)
			n := headEnd(req)
			ad := admit.New(admit.Config{})
			b.ReportAllocs()
			for b.Loop() {
				h, ok := parsePollHead(req[:n])
				if !ok {
					b.Fatal("refused")
				}
				if _, err := ad.Admit(&pollRequest{h: h, body: viewString(req[n:])}, admit.Poll); err != nil {
					b.Fatal("args refused")
				}
			}
		})
	}
}
