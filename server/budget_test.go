package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"wall/wall"
)

// TestBudgetNoWallLockout replays the hostile review's -max-walls denial
// of service against the cache budget that replaced it: 100 long-polls
// waiting on 100 empty walls, then one post on each of 1,500 new walls.
// Every post is stored (no 503, the default wall included), the caches
// stay within the budget by evicting idle walls, the walls being polled
// are kept, and their polls are answered by the next post.
func TestBudgetNoWallLockout(t *testing.T) {
	const budget = 256 << 10
	e := newMainEnv(t, Config{}, 10)
	e.hub.SetCacheBudget(budget)
	p := pollPath{name: "engine-first", engine: true}
	calls := make([]*pollCall, 100)
	for i := range calls {
		calls[i] = e.startPoll(p, pollReq(http.MethodGet, url.Values{"wall": {fmt.Sprintf("empty-%d", i)}, "cursor": {"0"}}))
	}
	for _, c := range calls {
		c.parked()
	}
	if m := e.post("", "the default wall takes posts"); m.Seq != 1 {
		t.Fatalf("default wall: %+v", m)
	}
	body := strings.Repeat("a wall of its own ", 60)
	for i := range 1500 {
		if m := e.post(fmt.Sprintf("one-%d", i), body); m.Seq != 1 {
			t.Fatalf("post %d: %+v", i, m)
		}
	}
	st := e.hub.CacheStats()
	if st.Bytes > budget || st.Evicted == 0 || st.Walls >= 1500 {
		t.Fatalf("cache %+v: want within the %d-byte budget, idle walls evicted", st, budget)
	}
	fams := scrape(t, e.srv)
	wantMetric(t, fams, float64(st.Bytes), "wall_cache_bytes")
	wantMetric(t, fams, budget, "wall_cache_budget_bytes")
	wantMetric(t, fams, float64(st.Evicted), "wall_cache_evicted_walls_total")
	wantMetric(t, fams, 0, "wall_cache_trimmed_messages_total")
	if m := e.post(wall.DefaultWall, "still"); m.Seq < 1 {
		t.Fatalf("default wall after the flood: %+v", m)
	}
	for _, i := range []int{0, 42, 99} {
		name := fmt.Sprintf("empty-%d", i)
		if e.hub.Lookup(name) == nil {
			t.Fatalf("wall %s, polled, was evicted", name)
		}
		e.post(name, "wake "+name)
		r := wantMessages(t, calls[i].answer())
		if ms := *r.Messages; len(ms) != 1 || ms[0].Body != "wake "+name {
			t.Fatalf("poll of %s answered %+v", name, ms)
		}
	}
}

// TestBudgetEvictedWallCursor: a wall the budget evicted lost its
// history (in-process broker); posted to again it numbers in a new epoch,
// so a poll with a cursor of the old numbering gets the new messages
// with "reset" rather than a silent gap, on every poll path.
func TestBudgetEvictedWallCursor(t *testing.T) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, Config{}, 10)
		e.hub.SetCacheBudget(64 << 10)
		var old testMsg
		for i := range 3 {
			old = e.post("a", fmt.Sprintf("old %d", i))
		}
		for i := 0; e.hub.Lookup("a") != nil; i++ { // other walls push it out
			e.publish(fmt.Sprintf("flood-%d", i), strings.Repeat("x", 1000))
		}
		for i := range 5 {
			if m := e.post("a", fmt.Sprintf("new %d", i)); m.Seq != uint64(i+1) || m.Cursor == cursorOf(old) {
				t.Fatalf("new message %+v after eviction", m)
			}
		}
		r := wantMessages(t, e.pollOver(p, pollReq(http.MethodGet, url.Values{"wall": {"a"}, "cursor": {old.Cursor}})))
		if !r.Reset || len(*r.Messages) != 5 || (*r.Messages)[0].Body != "new 0" {
			t.Fatalf("old cursor after eviction: reset %v, %d messages", r.Reset, len(*r.Messages))
		}
	})
}
