package server

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"wall/server/internal/admit"
	"wall/wall"
)

const testBodyLimit = 1024

// rawFormRequest is formRequest with a body that is already encoded.
func rawFormRequest(path, body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: admit.XSRFCookie, Value: testXSRF})
	return req
}

func TestPostMessageExactJSON(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{}, 200)
	rec := e.serve(formRequest("/a/message/new", url.Values{"body": {"see http://example.com/?a=1&b=2 '"}}))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=UTF-8" {
		t.Errorf("Content-Type %q", ct)
	}
	m := decodeMsg(t, rec.Body.Bytes())
	if !uuid4RE.MatchString(m.ID) {
		t.Errorf("id %q is not a lowercase UUID4", m.ID)
	}
	wantHTML := `<div class="message" id="m` + m.ID + `">see <a href="http://example.com/?a=1&amp;b=2">http://example.com/?a=1&amp;b=2</a> &#39;</div>` + "\n"
	if m.HTML != wantHTML {
		t.Errorf("html\n got %q\nwant %q", m.HTML, wantHTML)
	}
	// Python's separators, field order (the cursor and the time after
	// seq; no user for an anonymous post), and Tornado's "</" escaping.
	if m.Time < time.Now().Add(-time.Minute).UnixMilli() || m.Time > time.Now().UnixMilli() {
		t.Errorf("time %d is not now", m.Time)
	}
	want := `{"id": "` + m.ID + `", "seq": 1, "cursor": "1.` + e.hub.Wall(wall.DefaultWall).Epoch() + `", "time": ` + strconv.FormatInt(m.Time, 10) + `, "body": "see http://example.com/?a=1&b=2 '", "html": ` +
		`"<div class=\"message\" id=\"m` + m.ID + `\">see <a href=\"http://example.com/?a=1&amp;b=2\">` +
		`http://example.com/?a=1&amp;b=2<\/a> &#39;<\/div>\n"}`
	if rec.Body.String() != want {
		t.Errorf("JSON\n got %s\nwant %s", rec.Body, want)
	}
	// Stored before the answer (read your writes).
	msgs := e.hub.Lookup(wall.DefaultWall).Messages()
	if len(msgs) != 1 || msgs[0].ID != m.ID || string(msgs[0].JSON) != rec.Body.String() {
		t.Fatalf("cache holds %v", msgs)
	}
	// The next post gets the next seq.
	rec = e.serve(formRequest("/a/message/new", url.Values{"body": {"two"}}))
	if m2 := decodeMsg(t, rec.Body.Bytes()); m2.Seq != 2 || m2.ID == m.ID {
		t.Errorf("second message: %+v", m2)
	}
}

func TestPostJSONEscapesLikePython(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{}, 200)
	rec := e.serve(formRequest("/a/message/new", url.Values{"body": {"h\u00e9llo \u4e16 \U0001F600 </b> \"q\" \\ \x7f\tend"}}))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
	for _, want := range []string{
		`"body": "h\u00e9llo \u4e16 \ud83d\ude00 <\/b> \"q\" \\ \u007f\tend"`,
		`&lt;/b&gt; &quot;q&quot;`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("JSON %s\nlacks %s", rec.Body, want)
		}
	}
	for _, b := range rec.Body.Bytes() {
		if b >= 0x80 {
			t.Fatalf("JSON is not ASCII-only: %q", rec.Body)
		}
	}
	if m := decodeMsg(t, rec.Body.Bytes()); m.Body != "h\u00e9llo \u4e16 \U0001F600 </b> \"q\" \\ \x7f\tend" {
		t.Errorf("body round-trips as %q", m.Body)
	}
}

func TestPostBodyProcessing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, raw, want string }{
		{"control chars become spaces, tab LF CR DEL kept", "a\x00b\x08c\x0ed\x1fe\tf\ng\rh\x7fi", "a b c d e\tf\ng\rh\x7fi"},
		{"ASCII whitespace stripped", " \t\r\n hi there \n", "hi there"},
		{"Unicode whitespace stripped", "\u00a0\u3000\u2003hi\u00a0\u202f\u3000", "hi"},
		{"inner whitespace kept", "a\u00a0\u3000b", "a\u00a0\u3000b"},
		{"leading control char stripped after replacement", "\x01x", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, Config{}, 200)
			rec := e.serve(formRequest("/a/message/new", url.Values{"body": {tc.raw}}))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d %s", rec.Code, rec.Body)
			}
			if m := decodeMsg(t, rec.Body.Bytes()); m.Body != tc.want {
				t.Errorf("body %q, want %q", m.Body, tc.want)
			}
		})
	}
}

func TestPostStatuses(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("a", testBodyLimit+1)
	exact := strings.Repeat("b", testBodyLimit)
	multipartReq := func(fields ...string) func() *http.Request {
		return func() *http.Request {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			for i := 0; i < len(fields); i += 2 {
				mw.WriteField(fields[i], fields[i+1])
			}
			mw.Close()
			req := httptest.NewRequest(http.MethodPost, "/a/message/new", &buf)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			req.AddCookie(&http.Cookie{Name: admit.XSRFCookie, Value: testXSRF})
			return req
		}
	}
	for _, tc := range []struct {
		name     string
		req      func() *http.Request
		code     int
		location string // for 302
		stored   string // body of the one message stored, "" for none
	}{
		{name: "plain", req: func() *http.Request {
			return rawFormRequest("/a/message/new", "body=hi&_xsrf="+url.QueryEscape(testXSRF))
		},
			code: 200, stored: "hi"},
		{name: "next=/ redirects", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {"hi"}, "next": {"/"}})
		}, code: 302, location: "/", stored: "hi"},
		{name: "next=/w/foo redirects", req: func() *http.Request {
			return formRequest("/a/message/new?wall=foo", url.Values{"body": {"hi"}, "next": {"/w/foo"}})
		}, code: 302, location: "/w/foo"},
		{name: "empty next answers JSON", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {"hi"}, "next": {""}})
		}, code: 200, stored: "hi"},
		{name: "absolute next refused", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {"hi"}, "next": {"http://evil.example/"}})
		}, code: 400},
		{name: "scheme-relative next refused", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {"hi"}, "next": {"//evil.example/"}})
		}, code: 400},
		{name: "backslash next refused", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {"hi"}, "next": {"/\\evil.example/"}})
		}, code: 400},
		{name: "relative next refused", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {"hi"}, "next": {"evil"}})
		}, code: 400},
		{name: "missing body", req: func() *http.Request { return formRequest("/a/message/new", url.Values{"next": {"/"}}) }, code: 400},
		{name: "invalid UTF-8", req: func() *http.Request {
			return rawFormRequest("/a/message/new", "body=%FF&_xsrf="+url.QueryEscape(testXSRF))
		}, code: 400},
		{name: "invalid UTF-8 before bad next", req: func() *http.Request {
			return rawFormRequest("/a/message/new", "body=a%C3&next=//x&_xsrf="+url.QueryEscape(testXSRF))
		}, code: 400},
		{name: "empty body", req: func() *http.Request { return formRequest("/a/message/new", url.Values{"body": {""}}) }, code: 400},
		{name: "whitespace-only body", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {" \t\n\u00a0\u3000 "}})
		}, code: 400},
		{name: "control-only body", req: func() *http.Request { return formRequest("/a/message/new", url.Values{"body": {"\x01\x02"}}) }, code: 400},
		{name: "body at the limit", req: func() *http.Request { return formRequest("/a/message/new", url.Values{"body": {exact}}) },
			code: 200, stored: exact},
		{name: "body over the limit", req: func() *http.Request { return formRequest("/a/message/new", url.Values{"body": {big}}) }, code: 413},
		{name: "request over the request limit", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {"hi"}, "pad": {strings.Repeat("p", testBodyLimit*3+4096)}})
		}, code: 413},
		{name: "chunked request over the request limit", req: func() *http.Request {
			body := "body=hi&_xsrf=" + url.QueryEscape(testXSRF) + "&pad=" + strings.Repeat("p", testBodyLimit*3+4096)
			req := rawFormRequest("/a/message/new", "")
			req.Body = io.NopCloser(io.MultiReader(strings.NewReader(body)))
			req.ContentLength = -1
			return req
		}, code: 413},
		{name: "form wins over query", req: func() *http.Request {
			return formRequest("/a/message/new?body=query", url.Values{"body": {"form"}})
		}, code: 200, stored: "form"},
		{name: "last repeated value wins", req: func() *http.Request {
			return rawFormRequest("/a/message/new?body=q", "body=one&body=two&_xsrf="+url.QueryEscape(testXSRF))
		}, code: 200, stored: "two"},
		{name: "query alone", req: func() *http.Request {
			return formRequest("/a/message/new?body=from+query", url.Values{})
		}, code: 200, stored: "from query"},
		{name: "multipart", req: multipartReq("body", "multi part", "_xsrf", testXSRF), code: 200, stored: "multi part"},
		{name: "multipart over the limit", req: multipartReq("body", big, "_xsrf", testXSRF), code: 413},
		{name: "JSON body is not understood", req: func() *http.Request {
			req := httptest.NewRequest(http.MethodPost, "/a/message/new", strings.NewReader(`{"body": "hi"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-XSRFToken", testXSRF)
			req.AddCookie(&http.Cookie{Name: admit.XSRFCookie, Value: testXSRF})
			return req
		}, code: 400},
		{name: "bad wall name", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {"hi"}, "wall": {"bad!name"}})
		}, code: 400},
		{name: "too long wall name", req: func() *http.Request {
			return formRequest("/a/message/new", url.Values{"body": {"hi"}, "wall": {strings.Repeat("w", 65)}})
		}, code: 400},
		{name: "xsrf checked first", req: func() *http.Request {
			return httptest.NewRequest(http.MethodPost, "/a/message/new?next=//x", strings.NewReader(""))
		}, code: 403},
		{name: "GET is not allowed", req: func() *http.Request { return httptest.NewRequest(http.MethodGet, "/a/message/new?body=hi", nil) }, code: 405},
		{name: "PUT updates is not allowed", req: func() *http.Request {
			return httptest.NewRequest(http.MethodPut, "/a/message/updates", nil)
		}, code: 405},
		{name: "HEAD / is not allowed", req: func() *http.Request { return httptest.NewRequest(http.MethodHead, "/", nil) }, code: 405},
		{name: "unknown path", req: func() *http.Request { return httptest.NewRequest(http.MethodGet, "/nope", nil) }, code: 404},
		{name: "unknown POST path", req: func() *http.Request { return formRequest("/a/message/old", url.Values{"body": {"hi"}}) }, code: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, Config{BodyLimit: testBodyLimit}, 200)
			rec := e.serve(tc.req())
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.code, rec.Body)
			}
			if tc.code == 302 {
				if loc := rec.Header().Get("Location"); loc != tc.location {
					t.Errorf("Location %q, want %q", loc, tc.location)
				}
				if rec.Body.Len() != 0 {
					t.Errorf("redirect body %q, want empty", rec.Body)
				}
			}
			var stored []*wall.Message
			for _, name := range e.hub.Names() {
				stored = append(stored, e.hub.Lookup(name).Messages()...)
			}
			switch {
			case tc.code >= 400 && len(stored) != 0:
				t.Fatalf("error %d stored %d messages", tc.code, len(stored))
			case tc.code < 400 && len(stored) != 1:
				t.Fatalf("%d stored %d messages, want 1", tc.code, len(stored))
			case tc.stored != "" && stored[0].Body != tc.stored:
				t.Errorf("stored body %q, want %q", stored[0].Body, tc.stored)
			}
			if tc.code >= 400 && len(e.hub.Names()) != 0 {
				t.Errorf("error left walls behind: %v", e.hub.Names())
			}
		})
	}
}

// A post to a named wall lands on that wall only, with its own seq.
func TestPostNamedWall(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{}, 200)
	e.post("", "main one")
	m := e.post("foo", "foo one")
	if m.Seq != 1 {
		t.Errorf("first message of wall foo has seq %d", m.Seq)
	}
	if got := e.hub.Lookup("foo").Messages(); len(got) != 1 || got[0].Body != "foo one" {
		t.Errorf("wall foo holds %v", got)
	}
	if got := e.hub.Lookup(wall.DefaultWall).Messages(); len(got) != 1 || got[0].Body != "main one" {
		t.Errorf("wall main holds %v", got)
	}
}
