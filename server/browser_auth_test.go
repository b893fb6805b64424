package server

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"wall/server/internal/admit"
	"wall/server/internal/identity"
	"wall/wall/browsertest"
)

// The page and the library with identity on: a browser logged in by its
// backend (the wall_token cookie), private walls, and tokens from another
// origin.

// authSecret signs the tokens of these tests.
var authSecret = []byte("0123456789abcdef0123456789abcdef")

// mint returns a token for sub.
func mint(t *testing.T, sub string) string {
	t.Helper()
	tok, err := identity.Mint(authSecret, identity.Claims{Sub: sub, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// logIn sets the wall_token cookie for the server at base in tab's browser,
// as a backend on the same site would.
func logIn(t *testing.T, tab context.Context, base, token string) {
	t.Helper()
	if _, err := chromedp.Call(tab, network.SetCookie, network.SetCookieParams{Name: admit.TokenCookie, Value: token, URL: base}); err != nil {
		t.Fatal(err)
	}
}

func TestBrowserSignedIn(t *testing.T) {
	e := newBrowserEnv(t, Config{Identity: identity.Config{Secret: authSecret}}, nil)
	e.publish(t, "user:bob", "bob's own")
	browser := newBrowser(t)
	logIn(t, browser, e.url, mint(t, "alice"))

	// Posts are signed: the author is shown, live and after a reload.
	tab := openTab(t, browser, e.url+"/w/signed", "live (WebSocket)")
	if me := browsertest.Eval[string](t, tab, `document.querySelector(".conn .me").textContent`); me != "signed in as alice" {
		t.Errorf("header says %q", me)
	}
	postEnter(t, tab, "hello from alice")
	waitMessage(t, tab, "hello from alice")
	who := `[...document.querySelectorAll("#inbox .list .item .who")].map((e) => e.textContent).join(",")`
	waitJS(t, tab, "the author", who+` === "alice"`)
	tab = openTab(t, browser, e.url+"/w/signed?transport=longpoll", "live (long-poll)")
	postEnter(t, tab, "over HTTP too")
	waitMessage(t, tab, "over HTTP too")
	waitJS(t, tab, "both authors", who+` === "alice,alice"`)

	// Another user's private wall: the page says "not allowed", shows
	// nothing of it and does not try to connect.
	tab = openTab(t, browser, e.url+"/w/user:bob", "not allowed")
	text := browsertest.Eval[string](t, tab, `document.body.textContent`)
	if strings.Contains(text, "bob's own") || !strings.Contains(text, "Not allowed") {
		t.Errorf("private wall page shows:\n%s", text)
	}
	if browsertest.Eval[bool](t, tab, `"wallClient" in window`) || !browsertest.Eval[bool](t, tab, `document.getElementById("message").disabled`) {
		t.Error("the not-allowed page connects or takes posts")
	}
	// Its own private wall it reads.
	e.publish(t, "user:alice", "for alice only")
	tab = openTab(t, browser, e.url+"/w/user:alice", "live (WebSocket)")
	waitMessage(t, tab, "for alice only")
}

func TestBrowserLibraryTokens(t *testing.T) {
	site := newEmbedSite(t)
	e := newBrowserEnv(t, Config{AllowedOrigins: []string{site.URL}, Identity: identity.Config{Secret: authSecret}}, nil)
	server := strings.Replace(e.url, "127.0.0.1", "localhost", 1)
	browser := newBrowser(t)
	open := func(name, transports, token, want string) context.Context {
		q := url.Values{"server": {server}, "wall": {name}, "t": {transports}, "token": {token}}
		tab, cancel := chromedp.NewContext(browser)
		t.Cleanup(cancel)
		if err := chromedp.Do(tab, chromedp.Navigate(site.URL+"/?"+q.Encode())); err != nil {
			t.Fatal(err)
		}
		waitJS(t, tab, "state "+want, `window.w && w.state === `+jsString(want))
		return tab
	}

	// With a token another origin posts over HTTP too (a bearer header,
	// after a preflight), signed; and reads its private wall.
	for _, tr := range []string{"sse", "longpoll"} {
		tab := open("user:alice", tr, mint(t, "alice"), "live")
		res := awaitJS[string](t, tab, `w.publish("signed from afar over `+tr+`").then((m) => m.user + " " + m.body, (e) => "refused: " + e.message)`)
		if res != "alice signed from afar over "+tr {
			t.Errorf("%s: publish with a token: %s", tr, res)
		}
		waitGot(t, tab, "signed from afar over "+tr)
	}

	// Refused: final, with the reason, no retrying.
	for _, tc := range []struct{ name, token string }{
		{"someone else's", mint(t, "mallory")},
		{"a bad token", "not.a.token"},
	} {
		tab := open("user:alice", "websocket,sse,longpoll", tc.token, "offline")
		last := browsertest.Eval[map[string]any](t, tab, `states[states.length - 1]`)
		if s := last["status"]; s != float64(403) && s != float64(401) {
			t.Errorf("%s: last state %v, want offline after a 401 or 403", tc.name, last)
		}
		n := browsertest.Eval[int](t, tab, `states.length`)
		time.Sleep(1500 * time.Millisecond) // longer than a first backoff
		if browsertest.Eval[int](t, tab, `states.length`) != n || browsertest.Eval[string](t, tab, `w.state`) != "offline" {
			t.Errorf("%s: the library went on after a refusal: %v", tc.name, browsertest.Eval[[]any](t, tab, `states`))
		}
		t.Logf("%s: %v", tc.name, last)
	}
}
