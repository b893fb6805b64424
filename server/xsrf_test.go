package server

import (
	"bytes"
	"encoding/json"
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

func TestXSRFCheck(t *testing.T) {
	const (
		missing  = "'_xsrf' argument missing from POST"
		mismatch = "XSRF cookie does not match POST argument"
	)
	other := admit.EncodeXSRF([]byte("fedcba9876543210"))
	for _, path := range []string{"/a/message/new", "/a/message/updates"} {
		for _, tc := range []struct {
			name    string
			cookie  string
			field   *string
			headers map[string]string
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
			{name: "X-XSRFToken header", cookie: testXSRF, headers: map[string]string{"X-XSRFToken": testXSRF}, code: 200},
			{name: "X-CSRFToken header", cookie: testXSRF, headers: map[string]string{"X-CSRFToken": testXSRF}, code: 200},
			{name: "wrong header", cookie: testXSRF, headers: map[string]string{"X-XSRFToken": other}, code: 403, msg: mismatch},
			// Tornado: get_argument("_xsrf") or the headers, so an empty
			// field falls back to the header.
			{name: "empty field, header", cookie: testXSRF, field: ptr(""), headers: map[string]string{"X-XSRFToken": testXSRF}, code: 200},
			{name: "empty field, no header", cookie: testXSRF, field: ptr(""), code: 403, msg: missing},
		} {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				e := newTestEnv(t, Config{PollTimeout: 50 * time.Millisecond}, 200)
				e.publish("", "already here") // so polls answer at once
				form := url.Values{"body": {"hi"}}
				if tc.field != nil {
					form.Set("_xsrf", *tc.field)
				}
				req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if tc.cookie != "" {
					req.AddCookie(&http.Cookie{Name: admit.XSRFCookie, Value: tc.cookie})
				}
				for k, v := range tc.headers {
					req.Header.Set(k, v)
				}
				rec := e.serve(req)
				if rec.Code != tc.code {
					t.Fatalf("status %d, want %d (%s)", rec.Code, tc.code, rec.Body)
				}
				if tc.code == 403 {
					var got struct{ Error string }
					json.Unmarshal(rec.Body.Bytes(), &got)
					if got.Error != tc.msg {
						t.Errorf("message %q, want %q", got.Error, tc.msg)
					}
					if n := len(e.hub.Lookup("main").Messages()); n != 1 {
						t.Errorf("refused request changed the cache: %d messages", n)
					}
				}
			})
		}
	}
}

// The query string counts as an argument too, as in Tornado.
func TestXSRFInQuery(t *testing.T) {
	e := newTestEnv(t, Config{}, 200)
	req := httptest.NewRequest(http.MethodPost, "/a/message/new?_xsrf="+url.QueryEscape(testXSRF)+"&body=q", nil)
	req.AddCookie(&http.Cookie{Name: admit.XSRFCookie, Value: testXSRF})
	if rec := e.serve(req); rec.Code != http.StatusOK {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
}

// GET /a/message/updates is a read: no token needed.
func TestXSRFNotNeededForGetPoll(t *testing.T) {
	e := newTestEnv(t, Config{}, 200)
	e.publish("", "hello")
	rec := e.serve(httptest.NewRequest(http.MethodGet, "/a/message/updates", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
	if p := decodePoll(t, rec.Body.Bytes()); p.Messages == nil || len(*p.Messages) != 1 {
		t.Fatalf("answer %s", rec.Body)
	}
}

func ptr[T any](v T) *T { return &v }
