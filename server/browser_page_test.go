package server

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"wall/wall/browsertest"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The wall page as people use it: reading, writing, and the states it can
// be in.

func TestBrowserPageReading(t *testing.T) {
	e := newBrowserEnv(t, Config{}, nil)
	e.publish(t, "read", "rendered by the server")
	browser := newBrowser(t)
	tab := openTab(t, browser, e.url+"/w/read", "live (WebSocket)")
	e.publish(t, "read", "مرحبا بالعالم: right to left")

	// Multi-line input: Shift+Enter is a new line, Enter sends.
	if err := chromedp.Do(tab,
		chromedp.SendKeys(chromedp.CSS("#message"), "first line"),
		chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierShift)),
		chromedp.SendKeys(chromedp.CSS("#message"), "second line"+kb.Enter),
	); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, tab, "first line\nsecond line")
	waitShowsWall(t, tab, e.hub, "read")

	// Each message is a list item with its author, its time and its own
	// direction; the server-rendered ones too.
	items := browsertest.Eval[[]map[string]any](t, tab, `[...document.querySelectorAll("#inbox .list > li.item")].map((li) => ({
		body: li.querySelector(".message").textContent,
		dir: li.querySelector(".message").dir,
		who: li.querySelector(".meta .who").textContent,
		time: (li.querySelector(".meta time") || {}).dateTime || "",
	}))`)
	if len(items) != 3 {
		t.Fatalf("items %v", items)
	}
	for _, it := range items {
		if it["dir"] != "auto" || it["who"] != "anonymous" || it["time"] == "" {
			t.Errorf("item %v: want dir auto, the author and a time", it)
		}
	}
	roles := browsertest.Eval[string](t, tab, `[document.getElementById("inbox").getAttribute("role"), document.querySelector("#inbox ol").tagName, document.getElementById("status").getAttribute("role"), document.getElementById("countdown").getAttribute("aria-hidden")].join(" ")`)
	if roles != "log OL status true" {
		t.Errorf("roles %q: want the inbox a log of a list, a polite status and a silent countdown", roles)
	}
	if got := browsertest.Eval[string](t, tab, `getComputedStyle(document.querySelector("#inbox .message")).unicodeBidi`); got != "plaintext" {
		t.Errorf("unicode-bidi %q", got)
	}
}

func TestBrowserUnread(t *testing.T) {
	e := newBrowserEnv(t, Config{}, nil)
	for i := 1; i <= 60; i++ {
		e.publish(t, "long", fmt.Sprintf("message %d", i))
	}
	browser := newBrowser(t)
	tab := openTab(t, browser, e.url+"/w/long", "live (WebSocket)")
	atBottom := `-document.getElementById("scroller").scrollTop < 40`
	if !browsertest.Eval[bool](t, tab, atBottom) {
		t.Fatal("the page did not open at the newest message")
	}
	// At the bottom, new messages keep it there and the button stays away.
	e.publish(t, "long", "while at the bottom")
	waitMessage(t, tab, "while at the bottom")
	if !browsertest.Eval[bool](t, tab, atBottom) || !browsertest.Eval[bool](t, tab, `document.getElementById("unread").hidden`) {
		t.Error("a new message moved the reader off the bottom or showed the button")
	}

	// Scrolled up: new messages are counted on the button; the view stays.
	browsertest.Eval[bool](t, tab, `document.getElementById("scroller").scrollTop = -2000, true`)
	before := browsertest.Eval[float64](t, tab, `document.getElementById("scroller").scrollTop`)
	e.publish(t, "long", "while reading 1")
	e.publish(t, "long", "while reading 2")
	waitMessage(t, tab, "while reading 2")
	waitJS(t, tab, "the new-messages button", `!document.getElementById("unread").hidden`)
	if label := browsertest.Eval[string](t, tab, `document.getElementById("unread").textContent`); label != "2 new messages ↓" {
		t.Errorf("button %q", label)
	}
	t.Logf("scrollTop %v before, %v after two messages", before, browsertest.Eval[float64](t, tab, `document.getElementById("scroller").scrollTop`))
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS("#unread"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, "back at the bottom", atBottom+` && document.getElementById("unread").hidden`)
}

// contrastJS returns, for each text element the page shows, its contrast
// with the background it is drawn on (WCAG 2 relative luminance).
const contrastJS = `(() => {
	const rgb = (s) => s.match(/[\d.]+/g).map(Number);
	const lum = ([r, g, b]) => [r, g, b].map((c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; })
		.reduce((a, c, i) => a + c * [0.2126, 0.7152, 0.0722][i], 0);
	const bg = (el) => {
		for (; el; el = el.parentElement) {
			const c = rgb(getComputedStyle(el).backgroundColor);
			if (c.length < 4 || c[3] > 0) return c;
		}
		return [255, 255, 255];
	};
	const out = {};
	for (const sel of ["body", "h1 .brand", "#status", ".hint", "#form-error", "#notice", ".marker", ".meta .who",
			".meta .anon", ".meta time", "#inbox .message", "#inbox .message a", "#messageform button", "#unread", "#message"]) {
		const el = document.querySelector(sel);
		if (!el) { out[sel] = -1; continue; }
		const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
		out[sel] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
	}
	return out;
})()`

func TestBrowserContrast(t *testing.T) {
	e := newBrowserEnv(t, Config{}, nil)
	e.publish(t, "c", "a link http://example.com/ in a message")
	browser := newBrowser(t)
	tab := openTab(t, browser, e.url+"/w/c", "live (WebSocket)")
	// Show what is hidden, and a gap marker, so that all are measured.
	browsertest.Eval[bool](t, tab, `(() => {
		for (const id of ["form-error", "notice", "unread", "form-hint"]) document.getElementById(id).hidden = false;
		document.getElementById("form-error").textContent = "an error";
		wallClient.emit("gap", { missed: 3 });
		return true;
	})()`)
	waitJS(t, tab, "the marker", `document.querySelector(".marker") !== null`)
	for _, scheme := range []string{"light", "dark"} {
		if _, err := chromedp.Call(tab, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		}); err != nil {
			t.Fatal(err)
		}
		ratios := browsertest.Eval[map[string]float64](t, tab, contrastJS)
		var low []string
		for sel, r := range ratios {
			if r < 4.5 {
				low = append(low, fmt.Sprintf("%s %.2f", sel, r))
			}
		}
		worst := math.Inf(1)
		for _, r := range ratios {
			worst = min(worst, r)
		}
		t.Logf("%s: %d elements, lowest contrast %.2f:1", scheme, len(ratios), worst)
		if len(low) > 0 {
			t.Errorf("%s theme, contrast below 4.5:1: %s", scheme, strings.Join(low, ", "))
		}
	}
}

func TestBrowserNoScript(t *testing.T) {
	e := newBrowserEnv(t, Config{BodyLimit: 100}, nil)
	for i := 1; i <= 60; i++ {
		e.publish(t, "nojs", fmt.Sprintf("message %d", i))
	}
	browser := newBrowser(t)
	if _, err := chromedp.Call(browser, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(browser, chromedp.Navigate(e.url+"/w/nojs")); err != nil {
		t.Fatal(err)
	}
	// It opens at the newest message, with no script to scroll it.
	visible := browsertest.Eval[bool](t, browser, `(() => {
		const s = document.getElementById("scroller").getBoundingClientRect();
		const m = document.querySelector("#inbox .message:last-child").getBoundingClientRect();
		return m.bottom <= s.bottom + 1 && m.top >= s.top;
	})()`)
	if !visible {
		t.Error("the newest message is not in view without JavaScript")
	}

	// A refused post answers a page that keeps the text, ready to post again.
	long := strings.Repeat("too long ", 20)
	if err := chromedp.Do(browser,
		chromedp.SetValue(chromedp.CSS("#message"), long),
		chromedp.Click(chromedp.CSS(`#messageform button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#error")),
	); err != nil {
		t.Fatal(err)
	}
	title := browsertest.Eval[string](t, browser, `document.querySelector("#error h2").textContent`)
	kept := browsertest.Eval[string](t, browser, `document.getElementById("message").value`)
	if title != "Message too long" || kept != long {
		t.Errorf("error page %q keeps %q, want the text typed", title, kept)
	}
	// Shortened and posted again from there: back on the wall, stored.
	if err := chromedp.Do(browser,
		chromedp.SetValue(chromedp.CSS("#message"), "short enough"),
		chromedp.Click(chromedp.CSS(`#messageform button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#inbox")),
	); err != nil {
		t.Fatal(err)
	}
	url := browsertest.Eval[string](t, browser, `location.href`)
	ms := e.hub.Lookup("nojs").Messages()
	if last := ms[len(ms)-1]; last.Body != "short enough" || !strings.HasSuffix(url, "/w/nojs") {
		t.Errorf("after posting again: at %s, newest message %q", url, last.Body)
	}
}

// noCookies drops every cookie the server sets, as a browser that blocks
// this site's cookies would.
func noCookies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(cookieless{w}, r)
	})
}

type cookieless struct{ http.ResponseWriter }

func (c cookieless) WriteHeader(code int) {
	c.Header().Del("Set-Cookie")
	c.ResponseWriter.WriteHeader(code)
}

func (c cookieless) Write(b []byte) (int, error) {
	c.Header().Del("Set-Cookie")
	return c.ResponseWriter.Write(b)
}

func (c cookieless) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func TestBrowserCookiesBlocked(t *testing.T) {
	e := newBrowserEnv(t, Config{}, noCookies)
	browser := newBrowser(t)
	warned := `(() => { const w = document.getElementById("warning"); return !w.hidden && w.textContent.includes("Cookies are blocked"); })()`

	// Over a WebSocket, posting needs no cookie.
	tab := openTab(t, browser, e.url+"/w/crumbs", "live (WebSocket)")
	if !browsertest.Eval[bool](t, tab, warned) {
		t.Error("no warning that cookies are blocked")
	}
	postEnter(t, tab, "posted without cookies")
	waitMessage(t, tab, "posted without cookies")

	// Over HTTP it cannot: the page says why and keeps the text.
	tab = openTab(t, browser, e.url+"/w/crumbs?transport=longpoll", "live (long-poll)")
	postEnter(t, tab, "cannot go over HTTP")
	waitJS(t, tab, "the error", `document.getElementById("form-error").textContent.includes("cookies are blocked")`)
	if v := browsertest.Eval[string](t, tab, `document.getElementById("message").value`); v != "cannot go over HTTP" {
		t.Errorf("input %q after a refused post, want the text kept", v)
	}
}
