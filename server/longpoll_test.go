package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"wall/wall"
)

// pollResult is the outcome of an asynchronous poll.
type pollResult struct {
	code int
	body []byte
	err  error
}

// pollAsync starts a POST /a/message/updates (with the test XSRF token)
// carrying form, and delivers its outcome on the returned channel.
func (e *testEnv) pollAsync(form url.Values) <-chan pollResult {
	return e.pollAsyncPath("/a/message/updates", form)
}

// awaitPoll waits for a poll's answer and decodes it; it must be a 200.
func awaitPoll(t *testing.T, ch <-chan pollResult, d time.Duration) pollResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("poll: %v", r.err)
		}
		return r
	case <-time.After(d):
		t.Fatalf("poll not answered within %v", d)
	}
	panic("unreachable")
}

// pollNow polls and requires an immediate 200 with messages.
func (e *testEnv) pollNow(form url.Values) pollResp {
	e.t.Helper()
	r := awaitPoll(e.t, e.pollAsync(form), 5*time.Second)
	if r.code != http.StatusOK {
		e.t.Fatalf("poll %v: %d %s", form, r.code, r.body)
	}
	if bytes.Contains(r.body, []byte(`"messages": []`)) {
		e.t.Fatalf("empty messages list: %s", r.body)
	}
	p := decodePoll(e.t, r.body)
	if p.Messages == nil {
		e.t.Fatalf("poll %v: no messages in %s", form, r.body)
	}
	if len(*p.Messages) == 0 {
		e.t.Fatalf("poll %v: empty messages list", form)
	}
	last := (*p.Messages)[len(*p.Messages)-1]
	name := form.Get("wall")
	if name == "" {
		name = wall.DefaultWall
	}
	want := strconv.FormatUint(last.Seq, 10) + "." + e.hub.Wall(name).Epoch()
	if p.Cursor == nil || *p.Cursor != want || last.Cursor != want {
		e.t.Errorf("cursor %v (last message's %q), want %q", p.Cursor, last.Cursor, want)
	}
	return p
}

// parked waits until n requests are inside the handler.
func (e *testEnv) parked(n int64) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d requests in the handler", n), 5*time.Second, func() bool { return e.inflight.Load() >= n })
}

// notAnswered checks that a parked poll stays parked for a short while.
func notAnswered(t *testing.T, ch <-chan pollResult) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("poll answered although nothing qualifies: %d %s %v", r.code, r.body, r.err)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestLongPollCursors(t *testing.T) {
	const cache = 10
	e := newTestEnv(t, Config{}, cache)
	var ids []string // ids[i] has seq i+1
	for i := 1; i <= 5; i++ {
		ids = append(ids, e.post("", "m"+strconv.Itoa(i)).ID)
	}
	for _, tc := range []struct {
		name   string
		cursor string
		want   []uint64
		reset  bool
		missed uint64
	}{
		{name: "no cursor: whole cache", cursor: "", want: seqRange(1, 5)},
		{name: "oldest id", cursor: ids[0], want: seqRange(2, 5)},
		{name: "older id", cursor: ids[2], want: seqRange(4, 5)},
		{name: "unknown id", cursor: "0f0f0f0f-0000-4000-8000-000000000000", want: seqRange(1, 5), reset: true},
		{name: "seq 0", cursor: "0", want: seqRange(1, 5)},
		{name: "seq inside", cursor: "3", want: seqRange(4, 5)},
		{name: "future seq", cursor: "99", want: seqRange(1, 5), reset: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.pollNow(url.Values{"cursor": {tc.cursor}})
			if got := seqs(*p.Messages); !equalSeqs(got, tc.want) {
				t.Errorf("seqs %v, want %v", got, tc.want)
			}
			if p.Reset != tc.reset || p.Missed != tc.missed {
				t.Errorf("reset %v missed %d, want %v %d", p.Reset, p.Missed, tc.reset, tc.missed)
			}
			for i, m := range *p.Messages {
				if m.Body != "m"+strconv.FormatUint(m.Seq, 10) || m.ID != ids[m.Seq-1] {
					t.Errorf("message %d: %+v", i, m)
				}
			}
		})
	}

	// Evict: cache+6 posts in all; the first id and seqs 1..6 are gone.
	for i := 6; i <= cache+6; i++ {
		ids = append(ids, e.post("", "m"+strconv.Itoa(i)).ID)
	}
	for _, tc := range []struct {
		name   string
		cursor string
		want   []uint64
		reset  bool
		missed uint64
	}{
		{name: "evicted id", cursor: ids[0], want: seqRange(7, 16), reset: true},
		{name: "evicted seq", cursor: "2", want: seqRange(7, 16), missed: 4},
		{name: "seq just before the cache", cursor: "6", want: seqRange(7, 16)},
		{name: "seq 0 after eviction", cursor: "0", want: seqRange(7, 16), missed: 6},
		{name: "cached id", cursor: ids[13], want: seqRange(15, 16)},
		{name: "no cursor", cursor: "", want: seqRange(7, 16)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.pollNow(url.Values{"cursor": {tc.cursor}})
			if got := seqs(*p.Messages); !equalSeqs(got, tc.want) {
				t.Errorf("seqs %v, want %v", got, tc.want)
			}
			if p.Reset != tc.reset || p.Missed != tc.missed {
				t.Errorf("reset %v missed %d, want %v %d", p.Reset, p.Missed, tc.reset, tc.missed)
			}
		})
	}
}

// The missed count is part of the wire format: check the bytes.
func TestLongPollMissedOnTheWire(t *testing.T) {
	e := newTestEnv(t, Config{}, 2)
	for i := 0; i < 5; i++ {
		e.publish("", "x")
	}
	epoch := e.hub.Wall(wall.DefaultWall).Epoch()
	r := awaitPoll(t, e.pollAsync(url.Values{"cursor": {"1"}}), 5*time.Second)
	if !bytes.HasSuffix(r.body, []byte(`], "cursor": "5.`+epoch+`", "missed": 2}`)) {
		t.Errorf("answer %s", r.body)
	}
	r = awaitPoll(t, e.pollAsync(url.Values{"cursor": {"nope"}}), 5*time.Second)
	if !bytes.HasSuffix(r.body, []byte(`], "cursor": "5.`+epoch+`", "reset": true}`)) {
		t.Errorf("answer %s", r.body)
	}
	if !bytes.HasPrefix(r.body, []byte(`{"messages": [{"id": "`)) {
		t.Errorf("answer %s", r.body)
	}
	resp, err := e.client.Get(e.ts.URL + "/a/message/updates")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestLongPollBlocksOnEmptyCache(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	ch := e.pollAsync(nil)
	e.parked(1)
	notAnswered(t, ch)
	m := e.post("", "first")
	r := awaitPoll(t, ch, 5*time.Second)
	p := decodePoll(t, r.body)
	if p.Messages == nil || len(*p.Messages) != 1 || (*p.Messages)[0].ID != m.ID {
		t.Fatalf("answer %s", r.body)
	}
}

// Read your writes: once a post is answered, a poll with its id as the
// cursor waits for the next message and returns exactly it.
func TestLongPollNewestCursorBlocks(t *testing.T) {
	for _, kind := range []string{"id", "seq"} {
		t.Run(kind, func(t *testing.T) {
			e := newTestEnv(t, Config{}, 10)
			e.post("", "one")
			m := e.post("", "two")
			cursor := m.ID
			if kind == "seq" {
				cursor = strconv.FormatUint(m.Seq, 10)
			}
			ch := e.pollAsync(url.Values{"cursor": {cursor}})
			e.parked(1)
			notAnswered(t, ch)
			m3 := e.post("", "three")
			r := awaitPoll(t, ch, 5*time.Second)
			p := decodePoll(t, r.body)
			if p.Messages == nil || len(*p.Messages) != 1 || (*p.Messages)[0] != m3 {
				t.Fatalf("answer %s, want only %+v", r.body, m3)
			}
		})
	}
}

// A post to another wall does not answer a poll.
func TestLongPollWallsAreSeparate(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	ch := e.pollAsync(url.Values{"wall": {"bar"}})
	e.parked(1)
	e.post("foo", "elsewhere")
	e.post("", "main")
	notAnswered(t, ch)
	m := e.post("bar", "here")
	p := decodePoll(t, awaitPoll(t, ch, 5*time.Second).body)
	if p.Messages == nil || len(*p.Messages) != 1 || (*p.Messages)[0] != m {
		t.Fatalf("answer %+v", p)
	}
	code, body := e.postForm("/a/message/updates", url.Values{"wall": {"bad wall"}})
	if code != http.StatusBadRequest {
		t.Errorf("bad wall: %d %s", code, body)
	}
}

// TestLongPollAnyCursor: Tornado answers any cursor it does not know,
// whatever its length or bytes, with the whole cache; so does wall (with
// "reset"), where it used to answer some with 400.
func TestLongPollAnyCursor(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	m := e.publish("", "x")
	for _, c := range []string{"has space", strings.Repeat("a", 65), strings.Repeat("b", 4000), "\xff", "caf\u00e9",
		"tab\there", "nul\x00", `quote"}`, "1.", "007." + m.Epoch} {
		for _, get := range []bool{false, true} {
			var code int
			var body []byte
			if get {
				code, body = e.get("/a/message/updates?cursor=" + url.QueryEscape(c))
			} else {
				code, body = e.postForm("/a/message/updates", url.Values{"cursor": {c}})
			}
			if code != http.StatusOK {
				t.Errorf("cursor %q (GET %v): %d %s", c, get, code, body)
				continue
			}
			p := decodePoll(t, body)
			if p.Messages == nil || !equalSeqs(seqs(*p.Messages), []uint64{1}) || !p.Reset {
				t.Errorf("cursor %q (GET %v): %s, want the whole cache with reset", c, get, body)
			}
		}
	}
}

// TestLongPollEpochCursor: a cursor of the wall's epoch is a position; one
// of another epoch (from before a restart of the in-memory server) is
// answered with the whole cache and "reset" even though its seq exists in
// the new numbering.
func TestLongPollEpochCursor(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	for range 7 {
		e.publish("", "x")
	}
	epoch := e.hub.Wall(wall.DefaultWall).Epoch()
	p := e.pollNow(url.Values{"cursor": {"5." + epoch}})
	if !equalSeqs(seqs(*p.Messages), []uint64{6, 7}) || p.Reset {
		t.Errorf("own epoch: %+v", p)
	}
	p = e.pollNow(url.Values{"cursor": {"5.0123456789abcdef"}})
	if !equalSeqs(seqs(*p.Messages), seqRange(1, 7)) || !p.Reset {
		t.Errorf("another epoch: seqs %v reset %v, want 1..7 with reset", seqs(*p.Messages), p.Reset)
	}
}

func TestLongPollGet(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	m1 := e.post("foo", "one")
	e.post("foo", "two")
	code, body := e.get("/a/message/updates?wall=foo&cursor=" + m1.ID)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	p := decodePoll(t, body)
	if p.Messages == nil || !equalSeqs(seqs(*p.Messages), []uint64{2}) {
		t.Fatalf("answer %s", body)
	}
	// The cursor may also be in the query string of a POST.
	r := awaitPoll(t, e.pollAsyncPath("/a/message/updates?wall=foo&cursor=1", nil), 5*time.Second)
	if p := decodePoll(t, r.body); p.Messages == nil || !equalSeqs(seqs(*p.Messages), []uint64{2}) {
		t.Fatalf("answer %s", r.body)
	}
}

// pollAsyncPath is pollAsync with a path that may carry a query.
func (e *testEnv) pollAsyncPath(path string, form url.Values) <-chan pollResult {
	ch := make(chan pollResult, 1)
	req := formRequest(path, form)
	req.RequestURI = ""
	u, _ := url.Parse(e.ts.URL + path)
	req.URL, req.Host = u, u.Host
	go func() {
		resp, err := e.client.Do(req)
		if err != nil {
			ch <- pollResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- pollResult{code: resp.StatusCode, body: b, err: err}
	}()
	return ch
}

// TestLongPollTimeoutEchoesAnyCursor: the timeout answer echoes the cursor
// as sent, as valid JSON, whatever its bytes (invalid UTF-8 becomes
// U+FFFD). On an empty wall any cursor waits, so each one times out.
func TestLongPollTimeoutEchoesAnyCursor(t *testing.T) {
	e := newTestEnv(t, Config{PollTimeout: 50 * time.Millisecond}, 10)
	for _, cursor := range []string{"quote\"}", "back\\slash", "ctl\x00\x01\x1f\x7f", "caf\u00e9 日本 😀",
		"bad\xffutf8", "</script>", "3.0123456789abcdef", strings.Repeat("x", 3000)} {
		for _, get := range []bool{false, true} {
			var r pollResult
			if get {
				r.code, r.body = e.get("/a/message/updates?wall=empty&cursor=" + url.QueryEscape(cursor))
			} else {
				r = awaitPoll(t, e.pollAsync(url.Values{"wall": {"empty"}, "cursor": {cursor}}), 5*time.Second)
			}
			var obj map[string]any
			if err := json.Unmarshal(r.body, &obj); r.code != http.StatusOK || err != nil {
				t.Fatalf("cursor %q (GET %v): %d %s: %v", cursor, get, r.code, r.body, err)
			}
			want := strings.ToValidUTF8(cursor, "\uFFFD")
			if _, ok := obj["messages"]; ok || obj["cursor"] != want {
				t.Errorf("cursor %q (GET %v): answer %s, want it echoed", cursor, get, r.body)
			}
		}
	}
}

// A poll held for PollTimeout answers 200 without a "messages" key, so
// legacy chat.js polls again at once instead of backing off.
func TestLongPollTimeout(t *testing.T) {
	e := newTestEnv(t, Config{PollTimeout: 100 * time.Millisecond}, 10)
	m := e.post("", "only")
	for _, cursor := range []string{m.ID, "1", ""} {
		form := url.Values{"cursor": {cursor}}
		if cursor == "" {
			form = url.Values{"wall": {"empty"}}
		}
		start := time.Now()
		r := awaitPoll(t, e.pollAsync(form), 5*time.Second)
		if r.code != http.StatusOK {
			t.Fatalf("cursor %q: %d %s", cursor, r.code, r.body)
		}
		if time.Since(start) < 100*time.Millisecond {
			t.Errorf("cursor %q: answered after %v, before the timeout", cursor, time.Since(start))
		}
		var obj map[string]any
		if err := json.Unmarshal(r.body, &obj); err != nil {
			t.Fatalf("cursor %q: %s: %v", cursor, r.body, err)
		}
		if _, ok := obj["messages"]; ok {
			t.Errorf("cursor %q: timeout answer has messages: %s", cursor, r.body)
		}
		if obj["cursor"] != cursor {
			t.Errorf("cursor %q: answer %s", cursor, r.body)
		}
	}
	if e.hub.Lookup("empty") != nil {
		t.Errorf("wall of a timed-out poll kept")
	}
}

// hangUpPoll opens a raw connection, sends a poll that will wait, and
// returns the connection.
func hangUpPoll(t *testing.T, e *testEnv, wallName string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	body := url.Values{"_xsrf": {testXSRF}, "wall": {wallName}}.Encode()
	fmt.Fprintf(c, "POST /a/message/updates HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=%s\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		testXSRF, len(body), body)
	return c
}

// Clients that hang up mid-poll leave no goroutine and no wall behind, and
// the server keeps serving.
func TestLongPollHangUps(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	// Warm up the listener and the client's connection, then measure.
	e.post("", "warm")
	e.client.CloseIdleConnections()
	waitFor(t, "idle server", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
	base := goroutineBaseline()

	conns := make([]net.Conn, 50)
	for i := range conns {
		conns[i] = hangUpPoll(t, e, "hang")
	}
	e.parked(50)
	if e.hub.Lookup("hang") == nil {
		t.Fatal("pollers' wall not in the hub")
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "hung-up polls to return", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
	waitGoroutines(t, base)
	if e.hub.Lookup("hang") != nil {
		t.Errorf("empty wall kept after its pollers left: %v", e.hub.Names())
	}

	// Normal service afterwards.
	ch := e.pollAsync(url.Values{"wall": {"hang"}})
	e.parked(1)
	m := e.post("hang", "after")
	if p := decodePoll(t, awaitPoll(t, ch, 5*time.Second).body); p.Messages == nil || (*p.Messages)[0] != m {
		t.Fatalf("answer %+v", p)
	}
}

// hub.Close answers every pending poll at once, without messages.
func TestLongPollShutdown(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	m := e.post("", "x")
	var chs []<-chan pollResult
	for i := 0; i < 5; i++ {
		chs = append(chs, e.pollAsync(url.Values{"cursor": {m.ID}}))
	}
	chs = append(chs, e.pollAsync(url.Values{"wall": {"empty"}}))
	e.parked(int64(len(chs)))
	e.hub.Close()
	for _, ch := range chs {
		r := awaitPoll(t, ch, 2*time.Second)
		if r.code != http.StatusOK || bytes.Contains(r.body, []byte("messages")) {
			t.Errorf("after shutdown: %d %s", r.code, r.body)
		}
	}
	// New polls during shutdown answer at once too.
	r := awaitPoll(t, e.pollAsync(url.Values{"cursor": {m.ID}}), 2*time.Second)
	if r.code != http.StatusOK || bytes.Contains(r.body, []byte("messages")) {
		t.Errorf("poll after shutdown: %d %s", r.code, r.body)
	}
}
