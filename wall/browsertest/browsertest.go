// Package browsertest starts a real headless Chromium for tests, through
// chromedp: the one way the server's and the root package's browser tests
// get a browser. Without Chromium a test is skipped, unless
// WALL_REQUIRE_INTEGRATION=1 (as in CI) makes that a failure.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium returns the Chromium binary, skipping the test when there is
// none, unless WALL_REQUIRE_INTEGRATION=1 makes its absence a failure.
func Chromium(t testing.TB) string {
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

// Start starts headless Chromium, bounded by d and stopped at cleanup, and
// returns the context of its first tab; chromedp.NewContext on it opens
// more tabs.
func Start(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	path := Chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	// Chromium can fail to start on a loaded machine (CI runs the
	// packages' tests side by side): one more try before failing.
	var err error
	for range 2 {
		var tab context.Context
		if tab, err = start(t, ctx, path); err == nil {
			return tab
		}
		t.Logf("starting chromium: %v", err)
	}
	t.Fatalf("starting chromium: %v", err)
	return nil
}

// start starts headless Chromium under ctx and returns the context of its
// first tab, or why it did not start (and then it is gone).
func start(t testing.TB, ctx context.Context, path string) (context.Context, error) {
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
		// A container's /dev/shm is often 64 MiB, too little for
		// several browsers at once.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(900, 700),
	)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	// The first Run starts the browser.
	if err := chromedp.Do(tab); err != nil {
		cancelTab()
		cancelAlloc()
		return nil, err
	}
	t.Cleanup(cancelAlloc)
	t.Cleanup(cancelTab)
	return tab, nil
}

// Eval evaluates expr in tab and returns its value, failing the test if
// it cannot.
func Eval[T any](t testing.TB, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}
