package server

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"wall/server/internal/admit"
)

// browserAccept is what a browser sends when it loads a page or posts a
// form itself.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// TestErrorPage: a browser's own form post that is refused gets a page
// that says why and keeps the text; scripts keep getting JSON.
func TestErrorPage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{BodyLimit: 64}, 10)
	text := "a line\nand <b>another</b> " + strings.Repeat("x", 80)
	form := url.Values{"body": {text}, "wall": {"foo"}, "next": {"/w/foo"}}

	browser := func(f url.Values, mutate func(*http.Request)) *httptest.ResponseRecorder {
		req := formRequest("/a/message/new", f)
		req.Header.Set("Accept", browserAccept)
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		if mutate != nil {
			mutate(req)
		}
		return e.serve(req)
	}

	rec := browser(form, nil)
	page := rec.Body.String()
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("too long: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, want := range []string{
		"Message too long", "at most 64 bytes",
		`<textarea name="body" id="message" rows="6" dir="auto">` + html.EscapeString(text) + `</textarea>`,
		`<input type="hidden" name="wall" value="foo"/>`, `<input type="hidden" name="next" value="/w/foo"/>`,
		`<input type="hidden" name="_xsrf" value="2|`, `<a href="/w/foo">Back to the wall</a>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("error page lacks %s:\n%s", want, page)
		}
	}

	// No cookie: it says cookies are blocked, and sets one to try again.
	rec = browser(url.Values{"body": {"hi"}}, func(r *http.Request) { r.Header.Del("Cookie") })
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "Cookies are blocked") ||
		!strings.Contains(rec.Body.String(), ">hi</textarea>") || len(rec.Result().Cookies()) != 1 {
		t.Errorf("no cookie: %d %v\n%s", rec.Code, rec.Result().Cookies(), rec.Body)
	}
	// A cookie that does not match the form's token: the form expired.
	rec = browser(url.Values{"body": {"hi"}, "_xsrf": {admit.EncodeXSRF([]byte("another token!!!"))}}, nil)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "The form had expired") {
		t.Errorf("stale form: %d\n%s", rec.Code, rec.Body)
	}

	// Scripts: fetch (Sec-Fetch-Mode cors), jQuery (X-Requested-With), or
	// anything not asking for HTML gets the JSON error.
	for name, mutate := range map[string]func(*http.Request){
		"fetch":  func(r *http.Request) { r.Header.Set("Sec-Fetch-Mode", "cors") },
		"jquery": func(r *http.Request) { r.Header.Set("X-Requested-With", "XMLHttpRequest") },
		"curl":   func(r *http.Request) { r.Header.Set("Accept", "*/*"); r.Header.Del("Sec-Fetch-Mode") },
	} {
		rec := browser(form, mutate)
		if rec.Code != http.StatusRequestEntityTooLarge || rec.Body.String() != `{"error": "body too large"}` {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}

	// A page load that fails is a page too; its status stays.
	req := httptest.NewRequest(http.MethodGet, "/w/bad!name", nil)
	req.Header.Set("Accept", browserAccept)
	rec = e.serve(req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "No such wall") {
		t.Errorf("bad wall page: %d\n%s", rec.Code, rec.Body)
	}
}
