package server

import (
	"context"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Chromium loads the page under its Content-Security-Policy without a
// single violation (its inline import map, allowed by its hash, included),
// and the page goes live.
func TestBrowserCSPNoViolations(t *testing.T) {
	e := newBrowserEnv(t, Config{}, nil)
	browser := newBrowser(t)
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	// Runs before the page's own scripts, outside its policy.
	record := `window.__csp = []; document.addEventListener("securitypolicyviolation",
		(ev) => window.__csp.push(ev.violatedDirective + " " + ev.blockedURI));`
	addScript := func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: record})
		return chromedp.Void{}, err
	}
	if err := chromedp.Do(tab, addScript, chromedp.Navigate(e.url+"/w/csp")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, tab, "live (WebSocket)")
	violations, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`window.__csp`))
	if err != nil {
		t.Fatal(err)
	}
	if len(violations) > 0 {
		t.Fatalf("Content-Security-Policy violations: %v", violations)
	}
	// Had the import map been refused, that would be a violation too.
	if n, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll('script[type="importmap"]').length`)); err != nil || n != 1 {
		t.Fatalf("import maps on the page: %d %v", n, err)
	}
}
