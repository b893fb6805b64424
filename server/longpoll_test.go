package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every test here runs over every path a poll can take (pollPaths: net/http,
// the engine's first poll, the engine's keep-alive re-poll), with GET and
// POST polls, and reads the answers off the wire (wire_test.go).

// pollResult is the outcome of an asynchronous poll through the client.
type pollResult struct {
	code int
	body []byte
	err  error
}

// pollAsync starts a POST /a/message/updates (with the test XSRF token)
// carrying form through e.client, and delivers its outcome on the
// returned channel.
func (e *testEnv) pollAsync(form url.Values) <-chan pollResult {
	ch := make(chan pollResult, 1)
	req := formRequest("/a/message/updates", form)
	req.RequestURI = ""
	u, _ := url.Parse(e.base() + "/a/message/updates")
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

// awaitPoll waits for a poll's answer.
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

// pollNow polls through e.client and requires an immediate 200 with
// messages.
func (e *testEnv) pollNow(form url.Values) pollResp {
	e.t.Helper()
	r := awaitPoll(e.t, e.pollAsync(form), 5*time.Second)
	if r.code != http.StatusOK {
		e.t.Fatalf("poll %v: %d %s", form, r.code, r.body)
	}
	return wantMessages(e.t, &wireResponse{Status: r.code, Body: r.body,
		Header: http.Header{"Content-Type": {"application/json; charset=UTF-8"}}})
}

// parked waits until n requests are inside the handler.
func (e *testEnv) parked(n int64) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d requests in the handler", n), 5*time.Second, func() bool { return e.inflight.Load() >= n })
}

// sameSeqs checks a poll answer's messages against want.
func sameSeqs(t *testing.T, p pollResp, want []uint64) {
	t.Helper()
	if got := seqs(*p.Messages); !equalSeqs(got, want) {
		t.Errorf("seqs %v, want %v", got, want)
	}
}

func TestLongPollCursors(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		const cache = 10
		e := p.env(t, Config{}, cache)
		var ids []string // ids[i] has seq i+1
		for i := 1; i <= 5; i++ {
			ids = append(ids, e.post("", "m"+strconv.Itoa(i)).ID)
		}
		epoch := e.hub.Wall("main").Epoch()
		type cursorCase struct {
			name   string
			cursor string
			want   []uint64
			reset  bool
			missed uint64
		}
		run := func(cases []cursorCase) {
			for _, tc := range cases {
				r := e.pollOver(p, pollReq(method, url.Values{"cursor": {tc.cursor}}))
				got := wantMessages(t, r)
				if s := seqs(*got.Messages); !equalSeqs(s, tc.want) {
					t.Errorf("%s: seqs %v, want %v", tc.name, s, tc.want)
				}
				if got.Reset != tc.reset || got.Missed != tc.missed {
					t.Errorf("%s: reset %v missed %d, want %v %d", tc.name, got.Reset, got.Missed, tc.reset, tc.missed)
				}
				for _, m := range *got.Messages {
					if m.Body != "m"+strconv.FormatUint(m.Seq, 10) || m.ID != ids[m.Seq-1] {
						t.Errorf("%s: message %+v", tc.name, m)
					}
				}
			}
		}
		run([]cursorCase{
			{name: "no cursor: whole cache", cursor: "", want: seqRange(1, 5)},
			{name: "oldest id", cursor: ids[0], want: seqRange(2, 5)},
			{name: "older id", cursor: ids[2], want: seqRange(4, 5)},
			{name: "seq 0", cursor: "0", want: seqRange(1, 5)},
			{name: "seq inside", cursor: "3", want: seqRange(4, 5)},
			{name: "own epoch", cursor: "3." + epoch, want: seqRange(4, 5)},
			{name: "own epoch, newest but one", cursor: "4." + epoch, want: seqRange(5, 5)},
			// Unknown cursors get the whole cache and reset, whatever
			// their length or bytes (as Tornado answers them with the
			// whole cache).
			{name: "unknown id", cursor: "0f0f0f0f-0000-4000-8000-000000000000", want: seqRange(1, 5), reset: true},
			{name: "future seq", cursor: "99", want: seqRange(1, 5), reset: true},
			{name: "another epoch", cursor: "3.0123456789abcdef", want: seqRange(1, 5), reset: true},
			{name: "any printable string", cursor: "nope.x_~!", want: seqRange(1, 5), reset: true},
			{name: "a space", cursor: "has space", want: seqRange(1, 5), reset: true},
			{name: "65 characters", cursor: strings.Repeat("a", 65), want: seqRange(1, 5), reset: true},
			{name: "4000 characters", cursor: strings.Repeat("b", 4000), want: seqRange(1, 5), reset: true},
			{name: "invalid UTF-8", cursor: "\xff", want: seqRange(1, 5), reset: true},
			{name: "non-ASCII", cursor: "caf\u00e9", want: seqRange(1, 5), reset: true},
			{name: "control characters", cursor: "tab\there nul\x00", want: seqRange(1, 5), reset: true},
			{name: "JSON syntax", cursor: `quote"}`, want: seqRange(1, 5), reset: true},
			{name: "seq and a dot", cursor: "1.", want: seqRange(1, 5), reset: true},
		})

		// Evict: cache+6 posts in all; the first id and seqs 1..6 are gone.
		for i := 6; i <= cache+6; i++ {
			ids = append(ids, e.post("", "m"+strconv.Itoa(i)).ID)
		}
		run([]cursorCase{
			{name: "evicted id", cursor: ids[0], want: seqRange(7, 16), reset: true},
			{name: "evicted seq", cursor: "2", want: seqRange(7, 16), missed: 4},
			{name: "seq just before the cache", cursor: "6", want: seqRange(7, 16)},
			{name: "seq 0 after eviction", cursor: "0", want: seqRange(7, 16), missed: 6},
			{name: "cached id", cursor: ids[13], want: seqRange(15, 16)},
			{name: "no cursor after eviction", cursor: "", want: seqRange(7, 16)},
		})
	})
}

// The answer's bytes are the wire format: Python's separators, the stored
// message JSON, "missed" and "reset" after the cursor, and no compression.
func TestLongPollOnTheWire(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, Config{}, 2)
		for i := 0; i < 5; i++ {
			e.publish("", "x")
		}
		cached := e.hub.Lookup("main").Messages() // seqs 4 and 5
		m4, m5 := string(cached[0].JSON), string(cached[1].JSON)
		c5 := `"cursor": "5.` + e.hub.Wall("main").Epoch() + `"`
		for _, tc := range []struct{ cursor, want string }{
			{"4", `{"messages": [` + m5 + `], ` + c5 + `}`},
			{"1", `{"messages": [` + m4 + `, ` + m5 + `], ` + c5 + `, "missed": 2}`},
			{"nope", `{"messages": [` + m4 + `, ` + m5 + `], ` + c5 + `, "reset": true}`},
		} {
			r := e.pollOver(p, pollReq(method, url.Values{"cursor": {tc.cursor}}, "Accept-Encoding: gzip"))
			if r.Status != http.StatusOK || string(r.Body) != tc.want {
				t.Errorf("cursor %s: %v\nwant %s", tc.cursor, r, tc.want)
			}
			if ct, ce := r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"); ct != "application/json; charset=UTF-8" || ce != "" {
				t.Errorf("Content-Type %q, Content-Encoding %q", ct, ce)
			}
			if r.Header.Get("Content-Length") != strconv.Itoa(len(r.Body)) || r.Closes() {
				t.Errorf("framing: %s", r.Head)
			}
		}
	})
}

// A poll with nothing after its cursor waits, and the next message of its
// own wall, and only that, answers it.
func TestLongPollWaits(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, Config{}, 10)
		for _, tc := range []struct {
			name   string
			wall   string
			before int    // messages on the wall first
			cursor string // "id" or "seq" of the newest, or as is
			noise  []string
		}{
			{name: "empty cache, no cursor", wall: "empty"},
			{name: "empty cache, seq 0", wall: "empty0", cursor: "0"},
			{name: "newest id", wall: "byid", before: 2, cursor: "id"},
			{name: "newest seq", wall: "byseq", before: 2, cursor: "seq"},
			{name: "posts to other walls do not answer", wall: "bar", noise: []string{"foo", "main", "barn"}},
		} {
			var newest testMsg
			for i := 0; i < tc.before; i++ {
				newest = e.post(tc.wall, "before "+strconv.Itoa(i))
			}
			args := url.Values{"wall": {tc.wall}}
			switch tc.cursor {
			case "id":
				args.Set("cursor", newest.ID)
			case "seq":
				args.Set("cursor", strconv.FormatUint(newest.Seq, 10))
			case "":
			default:
				args.Set("cursor", tc.cursor)
			}
			c := e.startPoll(p, pollReq(method, args))
			c.waiting()
			for _, w := range tc.noise {
				e.post(w, "elsewhere")
			}
			if len(tc.noise) > 0 {
				c.waiting()
			}
			m := e.post(tc.wall, "wake")
			got := wantMessages(t, c.answer())
			if len(*got.Messages) != 1 || (*got.Messages)[0] != m {
				t.Errorf("%s: answer %+v, want only %+v", tc.name, *got.Messages, m)
			}
		}
	})
}

// Refused polls get a status and {"error": ...}, and the keep-alive
// connection serves the next poll, at once or after a wait.
func TestLongPollErrors(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, Config{}, 10)
		m := e.post("", "x")
		for _, tc := range []struct {
			name string
			args url.Values
			code int
		}{
			{"bad wall name", url.Values{"wall": {"bad wall"}}, 400},
			{"too long wall name", url.Values{"wall": {strings.Repeat("w", 65)}}, 400},
			// No cursor is refused: see TestLongPollCursors.
		} {
			wc := e.pollConn(p)
			r := e.startPollOn(p, wc, pollReq(method, tc.args)).answer()
			wantError(t, r, tc.code, "")
			if r.Closes() {
				t.Errorf("%s: the connection closes after a refusal", tc.name)
				continue
			}
			// The connection serves the next polls.
			wc.send(pollReq(method, url.Values{"cursor": {"0"}}))
			if got := wantMessages(t, wc.response(5*time.Second)); len(*got.Messages) != 1 || (*got.Messages)[0] != m {
				t.Errorf("%s: next poll %+v", tc.name, *got.Messages)
			}
			after := "0"
			if w := e.hub.Lookup("after"); w != nil {
				after = strconv.FormatUint(w.Last(), 10)
			}
			wc.send(pollReq(method, url.Values{"wall": {"after"}, "cursor": {after}}))
			ch := wc.readAsync(10 * time.Second)
			m2 := e.post("after", "after "+tc.name)
			select {
			case res := <-ch:
				if res.err != nil {
					t.Fatalf("%s: waiting poll after the error: %v", tc.name, res.err)
				}
				if got := wantMessages(t, res.resp); (*got.Messages)[len(*got.Messages)-1] != m2 {
					t.Errorf("%s: waiting poll after the error got %+v", tc.name, *got.Messages)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: waiting poll after the error not answered", tc.name)
			}
		}
		// Wrong methods are not polls.
		for _, m := range []string{http.MethodPut, http.MethodDelete} {
			r := e.pollOverAny(p, rawRequest(m, "/a/message/updates", ""))
			if r.Status != http.StatusMethodNotAllowed {
				t.Errorf("%s: %v", m, r)
			}
		}
	})
}

// pollOverAny sends req, which need not be a poll, over path p and returns
// its answer (no check of the path it took past the connection's).
func (e *testEnv) pollOverAny(p pollPath, req string) *wireResponse {
	e.t.Helper()
	wc := e.pollConn(p)
	wc.send(req)
	return wc.response(5 * time.Second)
}

// A poll asking "Connection: close" is answered, at once or after a wait,
// with "Connection: close", and the connection is closed.
func TestLongPollConnectionClose(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, Config{}, 10)
		m := e.post("", "x")
		c := e.startPoll(p, pollReq(method, nil, "Connection: close"))
		r := c.answer()
		if got := wantMessages(t, r); !r.Closes() || (*got.Messages)[0] != m {
			t.Errorf("at once: %s%s", r.Head, r.Body)
		}
		c.wc.closed(5 * time.Second)

		c = e.startPoll(p, pollReq(method, url.Values{"cursor": {m.ID}}, "Connection: close"))
		c.waiting()
		m2 := e.post("", "y")
		r = c.answer()
		if got := wantMessages(t, r); !r.Closes() || (*got.Messages)[0] != m2 {
			t.Errorf("after a wait: %s%s", r.Head, r.Body)
		}
		c.wc.closed(5 * time.Second)
	})
}

// A poll held for PollTimeout answers 200 without a "messages" key, so
// legacy chat.js polls again at once instead of backing off; the
// connection then serves the next poll, and a wall held only by the poll
// is dropped.
func TestLongPollTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, Config{PollTimeout: timeout}, 10)
		m := e.post("", "only")
		cases := []struct{ wall, cursor string }{
			{"", m.ID}, {"", "1"}, {"", m.Cursor}, {"empty", ""}, {"empty", "7"},
		}
		// On an empty wall any cursor waits, so each one times out.
		for _, c := range []string{"quote\"}", "back\\slash", "ctl\x00\x01\x1f\x7f", "caf\u00e9 \u65e5\u672c \U0001F600",
			"bad\xffutf8", "</script>", "3.0123456789abcdef", strings.Repeat("x", 3000)} {
			cases = append(cases, struct{ wall, cursor string }{"empty", c})
		}
		for _, tc := range cases {
			args := url.Values{"cursor": {tc.cursor}}
			if tc.wall != "" {
				args.Set("wall", tc.wall)
			}
			wc := e.pollConn(p)
			start := time.Now()
			r := e.startPollOn(p, wc, pollReq(method, args)).answer()
			if d := time.Since(start); d < timeout {
				t.Errorf("cursor %q: answered after %v, before the timeout", tc.cursor, d)
			}
			if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json; charset=UTF-8" || r.Closes() {
				t.Fatalf("cursor %q: %s%s", tc.cursor, r.Head, r.Body)
			}
			// The cursor comes back as sent, as valid JSON whatever its
			// bytes (invalid UTF-8 becomes U+FFFD).
			var obj map[string]any
			if err := json.Unmarshal(r.Body, &obj); err != nil || len(obj) != 1 || obj["cursor"] != strings.ToValidUTF8(tc.cursor, "\uFFFD") {
				t.Errorf("cursor %q: answer %s %v", tc.cursor, r.Body, err)
			}
			if plain := regexp.MustCompile(`^[ -~]{0,64}$`).MatchString(tc.cursor) && !strings.ContainsAny(tc.cursor, "\"\\<>&"); plain &&
				string(r.Body) != `{"cursor": "`+tc.cursor+`"}` {
				t.Errorf("cursor %q: answer %s, want Python's separators", tc.cursor, r.Body)
			}
			wc.send(pollReq(method, nil))
			if got := wantMessages(t, wc.response(5*time.Second)); (*got.Messages)[0] != m {
				t.Errorf("cursor %q: next poll %+v", tc.cursor, *got.Messages)
			}
			wc.c.Close()
		}
		waitFor(t, "the timed-out polls' wall to go", 5*time.Second, func() bool { return e.hub.Lookup("empty") == nil })
	})
}

// The cursor and the wall may be in the query string of a POST too, and
// the form wins over the query (Tornado's merge).
func TestLongPollQueryArgs(t *testing.T) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, Config{}, 10)
		m1 := e.post("foo", "one")
		e.post("foo", "two")
		e.post("", "main")
		body := url.Values{"_xsrf": {testXSRF}}
		for _, tc := range []struct {
			name, target string
			form         url.Values
			want         []uint64
		}{
			{"query", "/a/message/updates?wall=foo&cursor=1", body, []uint64{2}},
			{"query id", "/a/message/updates?wall=foo&cursor=" + m1.ID, body, []uint64{2}},
			{"form wins", "/a/message/updates?wall=main&cursor=2", url.Values{"_xsrf": {testXSRF}, "wall": {"foo"}, "cursor": {"0"}}, []uint64{1, 2}},
			{"last value wins", "/a/message/updates?cursor=0", url.Values{"_xsrf": {testXSRF}, "wall": {"main", "foo"}, "cursor": {"0", "1"}}, []uint64{2}},
		} {
			r := e.pollOver(p, rawRequest(http.MethodPost, tc.target, tc.form.Encode(), "Cookie: _xsrf="+testXSRF))
			if got := wantMessages(t, r); !equalSeqs(seqs(*got.Messages), tc.want) || (*got.Messages)[0].Body == "main" {
				t.Errorf("%s: %s", tc.name, r.Body)
			}
		}
	})
}

// Clients that hang up mid-poll leave no goroutine and no wall behind, and
// the server keeps serving. Not parallel: it counts goroutines.
func TestLongPollHangUps(t *testing.T) {
	for _, p := range pollPaths {
		t.Run(p.name, func(t *testing.T) {
			e := p.env(t, Config{}, 10)
			e.post("", "warm")
			e.client.CloseIdleConnections()
			conns := make([]*wireConn, 50)
			for i := range conns {
				conns[i] = e.dial()
			}
			if p.repoll {
				e.hold(conns...)
			}
			waitFor(t, "idle server", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
			base := goroutineBaseline()

			calls := make([]*pollCall, len(conns))
			for i, wc := range conns {
				calls[i] = e.startPollOn(p, wc, pollReq(http.MethodPost, url.Values{"wall": {"hang"}}))
			}
			for _, c := range calls {
				c.parked()
			}
			if p.repoll {
				// The engine's re-polls are parked once subscribed.
				waitFor(t, "50 re-polls to wait", 5*time.Second, func() bool {
					w := e.hub.Lookup("hang")
					return w != nil && w.Subscribers() == len(conns)
				})
			}
			notAnswered(t, 50*time.Millisecond, calls...)
			if e.hub.Lookup("hang") == nil {
				t.Fatal("pollers' wall not in the hub")
			}
			for _, wc := range conns {
				wc.c.Close()
			}
			for _, c := range calls {
				<-c.ch // the reader ends with the connection
			}
			waitFor(t, "hung-up polls to return", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
			waitGoroutines(t, base)
			// The engine lets go of a connection when it sees the hang-up.
			waitFor(t, "the pollers' empty wall to go", 5*time.Second, func() bool { return e.hub.Lookup("hang") == nil })

			// Normal service afterwards.
			c := e.startPoll(p, pollReq(http.MethodPost, url.Values{"wall": {"hang"}}))
			c.waiting()
			m := e.post("hang", "after")
			if got := wantMessages(t, c.answer()); (*got.Messages)[0] != m {
				t.Fatalf("answer %+v", *got.Messages)
			}
		})
	}
}

// hub.Close answers every pending poll at once, without messages, and
// polls that come during shutdown too.
func TestLongPollShutdown(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, Config{}, 10)
		m := e.post("", "x")
		var calls []*pollCall
		for i := 0; i < 5; i++ {
			calls = append(calls, e.startPoll(p, pollReq(method, url.Values{"cursor": {m.ID}})))
		}
		calls = append(calls, e.startPoll(p, pollReq(method, url.Values{"wall": {"empty"}})))
		for _, c := range calls {
			c.parked()
		}
		notAnswered(t, 100*time.Millisecond, calls...)
		e.hub.Close()
		for _, c := range calls {
			if r := c.answer(); r.Status != http.StatusOK || bytes.Contains(r.Body, []byte("messages")) {
				t.Errorf("after shutdown: %v", r)
			}
		}
		// A new poll during shutdown answers at once too (on a new
		// connection: the engine closes the connections it holds).
		r := e.pollOverAny(pollPath{}, pollReq(method, url.Values{"cursor": {m.ID}}))
		if r.Status != http.StatusOK || bytes.Contains(r.Body, []byte("messages")) {
			t.Errorf("poll after shutdown: %v", r)
		}
	})
}
