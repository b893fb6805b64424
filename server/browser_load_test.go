package server

import (
	"slices"
	"strconv"
	"testing"
	"time"
	"wall/wall/browsertest"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// watchLongTasks records the duration of every long task (over 50 ms of
// main-thread work) from now on.
const watchLongTasks = `(() => {
	window.longTasks = [];
	new PerformanceObserver((l) => l.getEntries().forEach((e) => longTasks.push(e.duration)))
		.observe({ type: "longtask" });
	return true;
})()`

// TestBrowserBurst posts 3,000 messages as fast as the server takes them
// to a wall a page is reading, over each transport: the page must end
// showing the newest 200 (the cache's size) in order, keep its DOM at that
// size, and never block its main thread for more than 200 ms at once.
func TestBrowserBurst(t *testing.T) {
	for _, tc := range []struct {
		name, query, status string
		cpu                 float64 // CPU slowdown; above 1 the numbers are logged, not judged
	}{
		{"websocket", "", "live (WebSocket)", 1},
		{"longpoll", "?transport=longpoll", "live (long-poll)", 1},
		{"longpoll-4x-cpu", "?transport=longpoll", "live (long-poll)", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A long task is wall-clock time on a shared machine: a run
			// that another process slowed is run again, twice at most.
			// A page that lays out per message fails every run by far.
			var worst float64
			for attempt := 1; attempt <= 3; attempt++ {
				if worst = burstOnce(t, tc.query, tc.status, tc.cpu); worst <= 200 || tc.cpu > 1 {
					return
				}
				t.Logf("attempt %d: a long task of %.0f ms", attempt, worst)
			}
			t.Errorf("a long task of %.0f ms in every run, want none over 200 ms", worst)
		})
	}
}

// burstOnce is one run of TestBrowserBurst: it checks what the page shows
// and returns its longest task, in ms.
func burstOnce(t *testing.T, query, status string, cpu float64) float64 {
	const burst, keep = 3000, 200
	e := newBrowserEnv(t, Config{}, nil)
	browser := newBrowser(t)
	tab := openTab(t, browser, e.url+"/w/burst"+query, status)
	browsertest.Eval[bool](t, tab, watchLongTasks)
	if cpu > 1 {
		if _, err := chromedp.Call(tab, emulation.SetCPUThrottlingRate, emulation.SetCPUThrottlingRateParams{Rate: cpu}); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	for i := 1; i <= burst; i++ {
		e.publish(t, "burst", "burst "+strconv.Itoa(i))
	}
	posted := time.Since(start)
	last := "burst " + strconv.Itoa(burst)
	waitMessage(t, tab, last)
	shown := time.Since(start)
	waitShowsWall(t, tab, e.hub, "burst")

	// Markers (gaps) come on top of the kept messages: a few.
	items := browsertest.Eval[int](t, tab, `document.querySelectorAll("#inbox .list > li.item").length`)
	markers := browsertest.Eval[[]string](t, tab, `[...document.querySelectorAll("#inbox .list > li.marker")].map((e) => e.textContent)`)
	if items > keep || len(markers) > 5 {
		t.Errorf("%d messages and %d markers shown after %d messages, want at most %d and a few", items, len(markers), burst, keep)
	}
	if len(markers) > 0 {
		t.Logf("markers: %q", markers)
	}
	bodies := browsertest.Eval[[]string](t, tab, `[...document.querySelectorAll("#inbox .list .message")].map((e) => e.textContent)`)
	var want []string
	for i := burst - keep + 1; i <= burst; i++ {
		want = append(want, "burst "+strconv.Itoa(i))
	}
	if !slices.Equal(bodies, want) {
		t.Errorf("page shows %d messages, not the newest %d in order", len(bodies), keep)
	}
	long := browsertest.Eval[[]float64](t, tab, `longTasks`)
	worst := 0.0
	for _, d := range long {
		worst = max(worst, d)
	}
	t.Logf("%d messages posted in %v, the last shown after %v; %d long tasks, the longest %.0f ms",
		burst, posted.Round(time.Millisecond), shown.Round(time.Millisecond), len(long), worst)
	return worst
}
