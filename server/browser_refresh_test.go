package server

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"wall/server/internal/identity"
	"wall/server/internal/outbound"
	"wall/wall/browsertest"
)

// refreshPage subscribes to mary's private wall over WebSocket only, with
// a token function that fetches a short-lived token from the application
// every time it is asked (expiryApp's /test-token).
const refreshPage = `<!DOCTYPE html>
<meta charset="utf-8"><title>token renewal</title>
<script type="module">
import { connect } from "/static/wall-client.js";
const r = { got: [], states: [], calls: 0, refreshes: 0 };
window.run = r;
r.w = connect({ wall: "user:mary", transports: ["websocket"], token: async ({ wall, refresh }) => {
	r.calls++;
	if (refresh && wall === "user:mary") r.refreshes++;
	return (await fetch("/test-token", { cache: "no-store" })).text();
} });
r.w.on("message", (m) => r.got.push(m.body));
r.w.on("state", (s) => r.states.push(s.state));
</script>`

// A page whose token function hands out 3 s tokens stays on one WebSocket
// across at least two of its tokens' expiries: the library asks for a
// fresh token (refresh: true) ahead of each exp and sends it over the
// socket, the server moves the connection's expiry, and the client never
// reconnects (its states are connecting, then live; the server ended no
// WebSocket session), while every message posted meanwhile arrives once,
// in order.
func TestBrowserLibTokenRenewal(t *testing.T) {
	var minted atomic.Int64
	cfg := idConfig(identity.AnonymousPost)
	cfg.Identity.Leeway = 200 * time.Millisecond
	app := expiryApp(3*time.Second, &minted)
	e := newBrowserEnv(t, cfg, func(next http.Handler) http.Handler {
		h := app(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/renewal" {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.Write([]byte(refreshPage))
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	tab := newBrowser(t)
	if err := chromedp.Do(tab, chromedp.Navigate(e.url+"/renewal")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, "the client live", `window.run && run.w.state === "live"`)
	start := time.Now()

	// Post every 150 ms for 8 s: the first token (exp at most 3 s off,
	// refused 200 ms later) and at least one renewed after it expire
	// meanwhile.
	var posted []string
	for time.Since(start) < 8*time.Second {
		body := fmt.Sprintf("m%d", len(posted))
		e.publish(t, "user:mary", body)
		posted = append(posted, body)
		time.Sleep(150 * time.Millisecond)
	}
	waitJS(t, tab, "every message delivered", `run.got.length >= `+fmt.Sprint(len(posted)))
	if got := browsertest.Eval[[]string](t, tab, `run.got`); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", posted) {
		t.Errorf("delivered %q, want %q: each once, in order", got, posted)
	}
	if states := browsertest.Eval[[]string](t, tab, `run.states`); fmt.Sprintf("%q", states) != `["connecting" "live"]` {
		t.Errorf("states %q, want connecting then live, and no reconnect", states)
	}
	var ended int64
	for r := outbound.Reason(0); r <= outbound.TokenExpired; r++ {
		ended += e.srv.wsEnded.Load(r)
	}
	if ended != 0 {
		t.Errorf("%d WebSocket sessions ended (%d for an expired token), want none", ended, e.srv.wsEnded.Load(outbound.TokenExpired))
	}
	calls, refreshes := browsertest.Eval[int](t, tab, `run.calls`), browsertest.Eval[int](t, tab, `run.refreshes`)
	if refreshes < 4 || calls != refreshes+1 {
		t.Errorf("token function called %d times, %d with refresh; want one without, then 4 or more with", calls, refreshes)
	}
	if n := minted.Load(); int(n) != calls {
		t.Errorf("the application minted %d tokens, the function was called %d times", n, calls)
	}
}
