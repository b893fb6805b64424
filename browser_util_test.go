package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// findChromium returns the Chromium binary, skipping the test when there is
// none, unless WALL_REQUIRE_INTEGRATION=1 makes its absence a failure (as
// server/browser_test.go does).
func findChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("WALL_REQUIRE_INTEGRATION") == "1" {
		t.Fatal("chromium not found and WALL_REQUIRE_INTEGRATION=1")
	}
	t.Skip("chromium not found; install it to run the browser tests")
	return ""
}

// newBrowser starts headless Chromium (the flags of the server package's
// browser tests), bounded by d and stopped at cleanup, and returns the
// context of its first tab; chromedp.NewContext on it opens more tabs.
func newBrowser(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	path := findChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(900, 700),
	)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	// The first Run starts the browser.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return tab
}

// evalJS evaluates expr in tab and returns its value.
func evalJS[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}
