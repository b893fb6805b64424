package server

import (
	"crypto/sha512"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"wall/wall"
)

func TestPageDefaultWall(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{}, 5)
	for i := 1; i <= 7; i++ {
		e.publish("", "m"+strconv.Itoa(i))
	}
	e.publish("", "<script>alert(1)</script> http://example.com/")
	e.publish("other", "not here")
	rec, _ := getPage(t, e, "/", "")
	page := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=UTF-8" {
		t.Errorf("Content-Type %q", ct)
	}

	// The inbox holds every cached message's html, oldest first, and
	// nothing else.
	var want strings.Builder
	for _, m := range e.hub.Lookup("main").Messages() {
		want.WriteString(m.HTML)
	}
	inbox := regexp.MustCompile(`(?s)<div id="inbox"[^>]*>\n(.*?)</div>\n</main>`).FindStringSubmatch(page)
	if inbox == nil {
		t.Fatalf("no inbox in\n%s", page)
	}
	if inbox[1] != want.String() {
		t.Errorf("inbox\n%s\nwant\n%s", inbox[1], want.String())
	}
	if n := strings.Count(page, `class="message"`); n != 5 {
		t.Errorf("%d messages on the page, want 5", n)
	}
	if strings.Contains(page, "<script>alert") || !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt; <a href=\"http://example.com/\">") {
		t.Errorf("message not escaped and linkified:\n%s", inbox[1])
	}
	if strings.Contains(page, "not here") || strings.Contains(page, ">m3<") || !strings.Contains(page, ">m4<") {
		t.Errorf("wrong messages on the page:\n%s", inbox[1])
	}
	// The client's first cursor: the newest message's, with the epoch.
	if want := `data-last="8.` + e.hub.Wall(wall.DefaultWall).Epoch() + `"`; !strings.Contains(page, want) {
		t.Errorf("page lacks %s", want)
	}

	for _, field := range []string{
		`<form action="/a/message/new" method="post" id="messageform">`,
		`name="body" id="message"`,
		`<button type="submit">Post</button>`,
		`<input type="hidden" name="next" value="/"/>`,
		`<input type="hidden" name="_xsrf" value="2|`,
	} {
		if !strings.Contains(page, field) {
			t.Errorf("page lacks %s", field)
		}
	}
	if strings.Contains(page, `name="wall"`) {
		t.Errorf("default wall page has a wall field")
	}
}

func TestPageNamedWall(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{}, 10)
	m := e.publish("foo", "on foo")
	e.publish("", "on main")
	rec, _ := getPage(t, e, "/w/foo", "")
	page := rec.Body.String()
	for _, s := range []string{
		`<input type="hidden" name="wall" value="foo"/>`,
		`<input type="hidden" name="next" value="/w/foo"/>`,
		m.HTML,
	} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %s", s)
		}
	}
	if strings.Contains(page, "on main") {
		t.Errorf("page of foo shows main's messages")
	}

	// An empty wall's page leaves no wall behind.
	getPage(t, e, "/w/empty", "")
	if e.hub.Lookup("empty") != nil {
		t.Errorf("page view kept an empty wall")
	}

	for _, path := range []string{"/w/bad!name", "/w/" + strings.Repeat("x", 65), "/w/a%20b"} {
		if rec := e.serve(httptest.NewRequest(http.MethodGet, path, nil)); rec.Code != http.StatusBadRequest {
			t.Errorf("GET %s: %d", path, rec.Code)
		}
	}
}

// The form posts back to the page of its wall without JavaScript.
func TestPageFormPost(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{}, 10)
	rec, field := getPage(t, e, "/w/foo", "")
	cookie := rec.Result().Cookies()[0]
	req := rawFormRequest("/a/message/new", "body=from+form&next=%2Fw%2Ffoo&wall=foo&_xsrf="+field)
	req.Header.Del("Cookie")
	req.AddCookie(cookie)
	res := e.serve(req)
	if res.Code != http.StatusFound || res.Header().Get("Location") != "/w/foo" {
		t.Fatalf("form post: %d %q %s", res.Code, res.Header().Get("Location"), res.Body)
	}
	if msgs := e.hub.Lookup("foo").Messages(); len(msgs) != 1 || msgs[0].Body != "from form" {
		t.Fatalf("wall foo holds %v", msgs)
	}
}

func TestStaticAssets(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{}, 10)
	_, pageBody := e.get("/")
	for _, tc := range []struct{ name, ctype string }{
		{"wall.js", "javascript"},
		{"wall.css", "text/css"},
	} {
		m := regexp.MustCompile(`"(/static/` + regexp.QuoteMeta(tc.name) + `\?v=([0-9a-f]+))"`).FindStringSubmatch(string(pageBody))
		if m == nil {
			t.Fatalf("page does not link %s with ?v=", tc.name)
		}
		resp, err := e.client.Get(e.base() + m[1])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) {
			t.Fatalf("GET %s: %d %q", m[1], resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if sum := sha512.Sum512(b); hex.EncodeToString(sum[:]) != m[2] {
			t.Errorf("%s: ?v= is not the sha512 of the content", tc.name)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s: Cache-Control %q", tc.name, cc)
		}
		// Without ?v= it is served but not marked immutable.
		resp, err = e.client.Get(e.base() + "/static/" + tc.name)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Errorf("GET /static/%s: %d %q", tc.name, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	}
	for _, path := range []string{"/static/nope.js", "/static/../server.go"} {
		if code, _ := e.get(path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d", path, code)
		}
	}
	// Pages and assets are compressed for clients that ask.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	if rec := e.serve(req); rec.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("page not gzipped: %q", rec.Header().Get("Content-Encoding"))
	}
	// Long-poll answers are not.
	e.publish("", "x")
	req = httptest.NewRequest(http.MethodGet, "/a/message/updates", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	if rec := e.serve(req); rec.Header().Get("Content-Encoding") != "" || !strings.HasPrefix(rec.Body.String(), `{"messages": [`) {
		t.Errorf("poll answer encoded: %q %.40s", rec.Header().Get("Content-Encoding"), rec.Body)
	}
}
