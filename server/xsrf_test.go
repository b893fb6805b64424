package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
	"wall/server/internal/admit"
)

var (
	xsrfV2RE     = regexp.MustCompile(`^2\|[0-9a-f]{8}\|[0-9a-f]{32}\|[0-9]+$`)
	hiddenXSRFRE = regexp.MustCompile(`<input type="hidden" name="_xsrf" value="([^"]*)"/>`)
	// chatJSCookieRE is how legacy chat.js reads the cookie.
	chatJSCookieRE = regexp.MustCompile(`\b_xsrf=([^;]*)\b`)
)

// getPage serves GET path with the given cookie (none if empty) and returns
// the recorder and the hidden _xsrf field.
func getPage(t *testing.T, e *testEnv, path, cookie string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: admit.XSRFCookie, Value: cookie})
	}
	rec := e.serve(req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	m := hiddenXSRFRE.FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("GET %s: no hidden _xsrf field in\n%s", path, rec.Body)
	}
	// html/template escapes | as is; the value is plain.
	return rec, m[1]
}

func TestXSRFCookieSetByPage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{}, 200)
	rec, field := getPage(t, e, "/", "")
	sc := rec.Header().Values("Set-Cookie")
	if len(sc) != 1 {
		t.Fatalf("Set-Cookie %q, want one", sc)
	}
	c, err := http.ParseSetCookie(sc[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "_xsrf" || c.Path != "/" || c.HttpOnly || c.Secure || c.MaxAge != 0 || !c.Expires.IsZero() || c.Domain != "" {
		t.Errorf("cookie %q: want _xsrf, Path=/ only", sc[0])
	}
	if !xsrfV2RE.MatchString(c.Value) {
		t.Errorf("cookie value %q is not 2|mask|token|time", c.Value)
	}
	if m := chatJSCookieRE.FindStringSubmatch("other=1; _xsrf=" + c.Value); m == nil || m[1] != c.Value {
		t.Errorf("chat.js's regex reads %q from cookie %q", m, c.Value)
	}
	if !xsrfV2RE.MatchString(field) {
		t.Errorf("hidden field %q is not 2|mask|token|time", field)
	}
	if !bytes.Equal(admit.DecodeXSRF(field), admit.DecodeXSRF(c.Value)) {
		t.Errorf("field %q does not unmask to the cookie's token %q", field, c.Value)
	}

	// With the cookie present: no new cookie, a differently masked field
	// for the same token, and both fields are accepted.
	rec2, field2 := getPage(t, e, "/", c.Value)
	if sc := rec2.Header().Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("cookie re-set although present: %q", sc)
	}
	_, field3 := getPage(t, e, "/w/foo", c.Value)
	if field2 == field || field3 == field2 || field2 == c.Value {
		t.Errorf("fields not masked afresh: %q %q %q (cookie %q)", field, field2, field3, c.Value)
	}
	for _, f := range []string{field, field2, field3, c.Value} {
		req := httptest.NewRequest(http.MethodPost, "/a/message/new", strings.NewReader(url.Values{"body": {"hi"}, "_xsrf": {f}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: admit.XSRFCookie, Value: c.Value})
		if rec := e.serve(req); rec.Code != http.StatusOK {
			t.Errorf("field %q with cookie %q: %d %s", f, c.Value, rec.Code, rec.Body)
		}
	}

	// A malformed cookie is replaced.
	rec4, _ := getPage(t, e, "/", "2|zz|zz|1")
	if sc := rec4.Header().Values("Set-Cookie"); len(sc) != 1 || !strings.HasPrefix(sc[0], "_xsrf=2|") {
		t.Errorf("malformed cookie not replaced: %q", sc)
	}
}

// The double-submit check, for posts and POST polls over every path: a
// fresh connection to a plain handler, one to main's server, and one the
// engine holds (where the engine reads the poll itself, and hands a post
// back to net/http). After any answer the connection serves the next poll.
func TestXSRFCheck(t *testing.T) {
	const (
		missing  = "'_xsrf' argument missing from POST"
		mismatch = "XSRF cookie does not match POST argument"
	)
	other := admit.EncodeXSRF([]byte("fedcba9876543210"))
	cases := []struct {
		name    string
		cookie  string
		field   *string
		headers []string
		code    int
		msg     string
	}{
		{name: "no cookie no field", code: 403, msg: missing},
		{name: "cookie but no field", cookie: testXSRF, code: 403, msg: missing},
		{name: "field but no cookie", field: ptr(testXSRF), code: 403, msg: mismatch},
		{name: "wrong field", cookie: testXSRF, field: ptr(other), code: 403, msg: mismatch},
		{name: "garbage field", cookie: testXSRF, field: ptr("2|zz|yy|1"), code: 403, msg: mismatch},
		{name: "v1 plain tokens", cookie: "abc", field: ptr("abc"), code: 200},
		{name: "v1 cookie, masked field", cookie: "abc", field: ptr(admit.EncodeXSRF([]byte("abc"))), code: 200},
		{name: "v1 mismatch", cookie: "abc", field: ptr("abd"), code: 403, msg: mismatch},
		{name: "masked differently", cookie: testXSRF, field: ptr(admit.EncodeXSRF(admit.DecodeXSRF(testXSRF))), code: 200},
		{name: "X-XSRFToken header", cookie: testXSRF, headers: []string{"X-XSRFToken: " + testXSRF}, code: 200},
		{name: "X-CSRFToken header", cookie: testXSRF, headers: []string{"X-CSRFToken: " + testXSRF}, code: 200},
		{name: "wrong header", cookie: testXSRF, headers: []string{"X-XSRFToken: " + other}, code: 403, msg: mismatch},
		// Tornado: get_argument("_xsrf") or the headers, so an empty
		// field falls back to the header.
		{name: "empty field, header", cookie: testXSRF, field: ptr(""), headers: []string{"X-XSRFToken: " + testXSRF}, code: 200},
		{name: "empty field, no header", cookie: testXSRF, field: ptr(""), code: 403, msg: missing},
		{name: "the cookie among others", cookie: testXSRF + "; other=1", field: ptr(testXSRF), code: 200},
		// Two X-XSRFToken headers, the first empty: the token is the
		// first one, as net/http's Header.Get reads it, so it is missing,
		// whichever path reads the request (the engine once took the
		// second).
		{name: "empty header then a valid one", cookie: testXSRF,
			headers: []string{"X-XSRFToken:", "X-XSRFToken: " + testXSRF}, code: 403, msg: missing},
		{name: "blank header then a valid one", cookie: testXSRF,
			headers: []string{"X-XSRFToken:  ", "X-XSRFToken: " + testXSRF}, code: 403, msg: missing},
	}
	forEachPath(t, func(t *testing.T, p pollPath) {
		for _, path := range []string{"/a/message/updates", "/a/message/new"} {
			for _, tc := range cases {
				t.Run(path+"/"+tc.name, func(t *testing.T) {
					t.Parallel()
					e := p.env(t, Config{}, 200)
					e.publish("", "already here") // so polls answer at once
					form := url.Values{"body": {"hi"}}
					if tc.field != nil {
						form.Set("_xsrf", *tc.field)
					}
					headers := tc.headers
					if tc.cookie != "" {
						headers = append([]string{"Cookie: _xsrf=" + tc.cookie}, headers...)
					}
					req := rawRequest(http.MethodPost, path, form.Encode(), headers...)
					wc := e.pollConn(p)
					var r *wireResponse
					if path == "/a/message/updates" {
						r = e.startPollOn(p, wc, req).answer()
					} else {
						wc.send(req)
						r = wc.response(5 * time.Second)
					}
					if r.Status != tc.code {
						t.Fatalf("%v, want %d", r, tc.code)
					}
					if tc.code == 403 {
						wantError(t, r, 403, tc.msg)
					}
					n := 1
					if tc.code == 200 && path == "/a/message/new" {
						n = 2
					}
					if got := len(e.hub.Lookup("main").Messages()); got != n {
						t.Errorf("%d messages cached, want %d", got, n)
					}
					// The connection serves the next poll.
					wc.send(pollReq(http.MethodPost, url.Values{"cursor": {"0"}}))
					if got := wantMessages(t, wc.response(5*time.Second)); len(*got.Messages) != n {
						t.Errorf("next poll: %d messages, want %d", len(*got.Messages), n)
					}
				})
			}
		}
	})
}

// The query string counts as an argument too, as in Tornado.
func TestXSRFInQuery(t *testing.T) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, Config{}, 200)
		q := "?_xsrf=" + url.QueryEscape(testXSRF)
		cookie := "Cookie: _xsrf=" + testXSRF
		wc := e.pollConn(p)
		wc.send(rawRequest(http.MethodPost, "/a/message/new"+q+"&body=q", "", cookie))
		if r := wc.response(5 * time.Second); r.Status != http.StatusOK || decodeMsg(t, r.Body).Body != "q" {
			t.Fatalf("post: %v", r)
		}
		r := e.pollOver(p, rawRequest(http.MethodPost, "/a/message/updates"+q, "", cookie))
		if got := wantMessages(t, r); (*got.Messages)[0].Body != "q" {
			t.Errorf("poll: %s", r.Body)
		}
	})
}

// GET /a/message/updates is a read: no token needed, none checked.
func TestXSRFNotNeededForGetPoll(t *testing.T) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, Config{}, 200)
		e.publish("", "hello")
		for _, headers := range [][]string{nil, {"Cookie: _xsrf=" + testXSRF}, {"X-XSRFToken: wrong"}} {
			r := e.pollOver(p, rawRequest(http.MethodGet, "/a/message/updates?_xsrf=wrong", "", headers...))
			if got := wantMessages(t, r); len(*got.Messages) != 1 {
				t.Errorf("%q: %s", headers, r.Body)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }
