package server

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"wall/server/internal/identity"
	"wall/server/internal/outbound"
	"wall/wall/browsertest"
)

// expiryPage imports the library from the wall's origin and subscribes
// to mary's private wall with token functions that fetch short-lived
// tokens from the application (the test's /test-token, wrapped around the
// server): over WebSocket only, over SSE only and over long-poll only,
// each asking for a fresh token every time; and two clients whose
// function gives a stale (expired) token unless asked to refresh, as an
// application that caches its token would: "renewer" over WebSocket then
// SSE, "poster" over SSE. A renewal over a live WebSocket (library 1.2)
// is given bob's token, which the server refuses, so that the WebSocket
// clients too reconnect at each expiry.
const expiryPage = `<!DOCTYPE html>
<meta charset="utf-8"><title>expiring tokens</title>
<script type="module">
import { connect } from "/static/wall-client.js";
window.runs = {};
for (const [name, transports, stale] of [["websocket", ["websocket"], false], ["sse", ["sse"], false],
		["longpoll", ["longpoll"], false], ["renewer", ["websocket", "sse"], true], ["poster", ["sse"], true]]) {
	const r = { got: [], states: [], calls: 0, refreshes: 0 };
	runs[name] = r;
	r.w = connect({ wall: "user:mary", transports, token: async ({ refresh }) => {
		r.calls++;
		if (refresh) r.refreshes++;
		// A renewal over the live WebSocket gets another user's token, which
		// the server refuses: this page tests the reconnect at each expiry
		// (browser_refresh_test.go tests the renewal).
		const renewal = refresh && r.w.state === "live" && r.w.transport === "websocket";
		const res = await fetch(stale && !refresh ? "/test-token?stale=1" : renewal ? "/test-token?sub=bob" : "/test-token", { cache: "no-store" });
		return res.text();
	} });
	r.w.on("message", (m) => r.got.push(m.body));
	r.w.on("state", (s) => r.states.push(s));
}
</script>`

// expiryApp is the application around the wall server: it serves
// expiryPage and mints mary's tokens, each valid for about ttl (exp has a
// precision of a second), or expired a minute ago (?stale=1), or bob's
// (?sub=bob).
func expiryApp(ttl time.Duration, minted *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/expiry":
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.Write([]byte(expiryPage))
			case "/test-token":
				if r.URL.Query().Get("stale") == "1" {
					tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
						"sub": "mary", "exp": time.Now().Add(-time.Minute).Unix()}).SignedString(idSecret)
					if err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
					w.Write([]byte(tok))
					return
				}
				sub := "mary"
				if r.URL.Query().Get("sub") == "bob" {
					sub = "bob"
				}
				tok, err := identity.Mint(idSecret, identity.Claims{Sub: sub, TTL: ttl})
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				minted.Add(1)
				w.Write([]byte(tok))
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
}

// A page whose token function hands out 3 s tokens stays subscribed across
// two expiries on WebSocket, SSE and long-poll: each time the server ends
// the stream (token_expired) or refuses the next poll, the library asks
// for a fresh token and reconnects at once from its cursor, so every
// message posted meanwhile arrives once, in order, and the client never
// goes offline. A function that gives a stale token unless asked to
// refresh gets asked once after the refusal: the WebSocket handshake's
// 401, which a browser does not show, is learnt from SSE and the client
// comes back to WebSocket; a post over HTTP refused 401 is sent again with
// a fresh token and stored.
func TestBrowserLibTokenExpiry(t *testing.T) {
	var minted atomic.Int64
	cfg := idConfig(identity.AnonymousPost)
	cfg.Identity.Leeway = 200 * time.Millisecond
	e := newBrowserEnv(t, cfg, expiryApp(3*time.Second, &minted))
	tab := newBrowser(t)
	if err := chromedp.Do(tab, chromedp.Navigate(e.url+"/expiry")); err != nil {
		t.Fatal(err)
	}
	clients := []string{"websocket", "sse", "longpoll", "renewer", "poster"}
	waitJS(t, tab, "every client live", `window.runs && Object.values(runs).every((r) => r.w.state === "live")`)

	// Post every 150 ms until each streaming transport has had two
	// streams ended by an expired token, and a few more after.
	var posted []string
	post := func() {
		body := fmt.Sprintf("m%d", len(posted))
		e.publish(t, "user:mary", body)
		posted = append(posted, body)
	}
	expired := func() (ws, sse int64) {
		return e.srv.wsEnded.Load(outbound.TokenExpired), e.srv.sse.ended.Load(outbound.TokenExpired)
	}
	deadline := time.Now().Add(15 * time.Second)
	for ws, sse := expired(); ws < 4 || sse < 3; ws, sse = expired() { // two each, and the renewer's and poster's
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s, %d WebSocket and %d SSE streams ended by an expired token, want 4 and 3", ws, sse)
		}
		post()
		time.Sleep(150 * time.Millisecond)
	}
	for range 3 {
		post()
	}

	want := fmt.Sprintf("%q", posted)
	for _, c := range clients {
		run := `runs.` + c
		waitJS(t, tab, c+" to deliver every message", run+`.got.length >= `+fmt.Sprint(len(posted)))
		if got := browsertest.Eval[[]string](t, tab, run+`.got`); fmt.Sprintf("%q", got) != want {
			t.Errorf("%s delivered %q, want %s: each once, in order", c, got, want)
		}
		states := browsertest.Eval[[]map[string]any](t, tab, run+`.states`)
		renewals := 0
		for _, s := range states {
			if s["state"] == "offline" || s["state"] == "closed" {
				t.Errorf("%s went %v", c, s)
			}
			if s["state"] == "reconnecting" && s["reason"] == "token expired" {
				renewals++
				if d, _ := s["delay"].(float64); d != 0 {
					t.Errorf("%s reconnected after %v ms for an expired token, want at once", c, d)
				}
			}
		}
		calls := browsertest.Eval[int](t, tab, run+`.calls`)
		refreshes := browsertest.Eval[int](t, tab, run+`.refreshes`)
		switch c {
		case "renewer", "poster":
			if renewals < 2 || refreshes < 2 {
				t.Errorf("%s: %d reconnects for an expired token, %d refreshes: want 2+ (the stale token, then an expiry)", c, renewals, refreshes)
			}
		default:
			if renewals < 2 || calls < 3 || refreshes < 2 {
				t.Errorf("%s: %d reconnects for an expired token, token function called %d times (%d to refresh), want 2+, 3+, 2+: %v",
					c, renewals, calls, refreshes, states)
			}
		}
	}
	if tr := browsertest.Eval[string](t, tab, `runs.renewer.w.transport`); tr != "websocket" {
		t.Errorf("renewer on %q, want back on websocket once it had a fresh token", tr)
	}

	// The poster's post goes over HTTP with its stale token: 401, then a
	// fresh token, and it is stored once.
	before := browsertest.Eval[int](t, tab, `runs.poster.refreshes`)
	res := awaitJS[string](t, tab, `runs.poster.w.publish("with a stale token").then((m) => m.body, (e) => "refused " + e.status + " " + e.message)`)
	if res != "with a stale token" {
		t.Errorf("publish with a stale token: %s", res)
	}
	if n := browsertest.Eval[int](t, tab, `runs.poster.refreshes`); n != before+1 {
		t.Errorf("publish asked for %d fresh tokens, want 1", n-before)
	}
	if n := minted.Load(); n < 10 {
		t.Errorf("the application minted %d tokens, want 10 or more", n)
	}
}
