package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"wall/wall/browsertest"

	"github.com/chromedp/chromedp"
)

// The client library used as other sites use it: imported by a page of
// another origin, with the transports it asks for.

// embedPage is a page of another site that imports the wall's library
// from the wall server named in its query and connects to one of its
// walls: ?server=<url>&wall=<name>&t=<transports>[&token=<jwt>].
const embedPage = `<!DOCTYPE html>
<meta charset="utf-8"><title>another site</title>
<script type="module">
const p = new URLSearchParams(location.search);
const server = p.get("server");
window.got = []; window.gaps = []; window.states = [];
try {
	const lib = await import(server + "/static/wall-client.js");
	window.version = lib.VERSION;
	const w = lib.connect({ url: server, wall: p.get("wall"), transports: p.get("t").split(","), token: p.get("token") || undefined,
		backoffMin: Number(p.get("backoffMin")) || undefined });
	w.on("message", (m) => got.push(m.body));
	w.on("gap", (g) => gaps.push(g));
	w.on("state", (s) => states.push(s));
	window.w = w;
} catch (err) {
	window.importError = String(err);
}
</script>`

// newEmbedSite serves embedPage on an origin of its own.
func newEmbedSite(t *testing.T) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(embedPage))
	}))
	t.Cleanup(ts.Close)
	return ts
}

// openEmbed opens the embedding page of site, connected to wall name of
// server over transports, and waits until the library has settled in
// state want ("live" or "offline").
func openEmbed(t *testing.T, browser context.Context, site, server, name, transports, want string) context.Context {
	t.Helper()
	q := url.Values{"server": {server}, "wall": {name}, "t": {transports}}
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab, chromedp.Navigate(site+"/?"+q.Encode())); err != nil {
		t.Fatal(err)
	}
	expr := `window.importError || (window.w && w.state === ` + jsString(want) + `)`
	if err := chromedp.Do(tab, chromedp.Poll[chromedp.Void](expr)); err != nil {
		states, _ := chromedp.Run(tab, chromedp.Evaluate[any](`window.states`))
		t.Fatalf("library on %s never %s over %s: states %v (%v)", site, want, transports, states, err)
	}
	if msg := browsertest.Eval[string](t, tab, `window.importError || ""`); msg != "" {
		t.Fatalf("importing the library from %s: %s", site, msg)
	}
	return tab
}

// waitGot waits until the embedding page's library has delivered body.
func waitGot(t *testing.T, tab context.Context, body string) {
	t.Helper()
	waitJS(t, tab, "the message "+body, `got.includes(`+jsString(body)+`)`)
}

func TestBrowserCrossOrigin(t *testing.T) {
	site := newEmbedSite(t)
	stranger := newEmbedSite(t) // an origin the wall does not allow
	e := newBrowserEnv(t, Config{AllowedOrigins: []string{site.URL}}, nil)
	// The wall by another name than the site's, so that only the port
	// would tell them apart otherwise.
	server := strings.Replace(e.url, "127.0.0.1", "localhost", 1)
	browser := newBrowser(t)

	for _, tr := range []string{"websocket", "sse", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			name := "embed-" + tr
			e.publish(t, name, "history")
			tab := openEmbed(t, browser, site.URL, server, name, tr, "live")
			if v := browsertest.Eval[string](t, tab, `version`); v == "" {
				t.Errorf("no VERSION export")
			}
			if got := browsertest.Eval[string](t, tab, `w.transport`); got != tr {
				t.Errorf("transport %q, want %q", got, tr)
			}
			waitGot(t, tab, "history")
			e.publish(t, name, "live from the server")
			waitGot(t, tab, "live from the server")
			if n := browsertest.Eval[int](t, tab, `got.length`); n != 2 {
				t.Errorf("delivered %d messages, want 2: %v", n, browsertest.Eval[[]string](t, tab, `got`))
			}

			// Posting: a WebSocket needs nothing more; over HTTP another
			// origin needs a token (it cannot read the _xsrf cookie).
			res := awaitJS[string](t, tab, `w.publish("from another origin").then((m) => "stored " + m.seq, (e) => "refused: " + e.message)`)
			switch tr {
			case "websocket":
				if res != "stored 3" {
					t.Errorf("publish over a cross-origin WebSocket: %s", res)
				}
				waitGot(t, tab, "from another origin")
			default:
				if !strings.Contains(res, "needs a token") {
					t.Errorf("publish over HTTP from another origin without a token: %s", res)
				}
			}
		})
	}

	// An origin the wall does not allow gets nothing, and its library
	// stops with the reason rather than retrying for ever.
	t.Run("not allowed", func(t *testing.T) {
		e.publish(t, "closed", "not for strangers")
		tab := openEmbed(t, browser, stranger.URL, server, "closed", "websocket,sse,longpoll", "offline")
		last := browsertest.Eval[map[string]any](t, tab, `states[states.length - 1]`)
		if last["status"] != float64(http.StatusForbidden) || !strings.Contains(last["reason"].(string), "origin not allowed") {
			t.Errorf("last state %v, want offline with 403 origin not allowed", last)
		}
		if n := browsertest.Eval[int](t, tab, `got.length`); n != 0 {
			t.Errorf("a stranger's page got %d messages", n)
		}
	})
}

func TestBrowserSSEOnly(t *testing.T) {
	p := &partition{host: "localhost:"}
	e := newBrowserEnv(t, Config{}, p.wrap)
	browser := newBrowser(t)
	tab1 := openTab(t, browser, e.url+"/w/sse?transport=sse", "live (SSE)")
	tab2 := openTab(t, browser, strings.Replace(e.url, "127.0.0.1", "localhost", 1)+"/w/sse?transport=sse", "live (SSE)")

	postEnter(t, tab1, "over SSE")
	waitMessage(t, tab2, "over SSE")
	postEnter(t, tab2, "and back")
	waitMessage(t, tab1, "and back")

	// A cut stream resumes from its cursor: what was posted meanwhile
	// arrives once, in order.
	p.cut()
	waitStatus(t, tab2, "reconnecting…")
	e.publish(t, "sse", "while tab 2 was cut off")
	p.heal()
	waitStatus(t, tab2, "live (SSE)")
	waitShowsWall(t, tab2, e.hub, "sse")
	waitShowsWall(t, tab1, e.hub, "sse")
	if tr := browsertest.Eval[string](t, tab2, `wallClient.transport`); tr != "sse" {
		t.Errorf("transport %q, want sse only", tr)
	}
}

// TestBrowserDrainHint: a draining server's reconnect hint (WebSocket close
// 1012 {"reconnect_ms": N}, the event stream's retry:) sets when the
// library comes back, instead of its own backoff (made 20 s here so the
// two cannot be confused): the server's clients come back spread over
// 0.5–3 s, not at once and not late.
func TestBrowserDrainHint(t *testing.T) {
	site := newEmbedSite(t)
	browser := newBrowser(t)
	for _, tr := range []string{"websocket", "sse"} {
		t.Run(tr, func(t *testing.T) {
			e := newBrowserEnv(t, Config{AllowedOrigins: []string{site.URL}}, nil)
			q := url.Values{"server": {e.url}, "wall": {"drain"}, "t": {tr}, "backoffMin": {"20000"}}
			tab, cancel := chromedp.NewContext(browser)
			t.Cleanup(cancel)
			if err := chromedp.Do(tab, chromedp.Navigate(site.URL+"/?"+q.Encode())); err != nil {
				t.Fatal(err)
			}
			waitJS(t, tab, "live", `window.w && w.state === "live"`)
			<-e.srv.Drain(0)
			waitJS(t, tab, "the reconnect scheduled", `states.some((s) => s.state === "reconnecting")`)
			delay := browsertest.Eval[float64](t, tab, `states.find((s) => s.state === "reconnecting").delay`)
			if delay < 500 || delay >= 3000 {
				t.Fatalf("reconnect after %.0f ms, want the server's hint (500–3000 ms)", delay)
			}
		})
	}
}
