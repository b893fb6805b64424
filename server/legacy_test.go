package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// chatJS speaks the long-poll protocol exactly as Tornado's demos/chat
// static/chat.js does: the _xsrf token comes from document.cookie, the
// first poll has no cursor, later polls send the id of the last message
// received, and posts send body and _xsrf form-urlencoded.
type chatJS struct {
	t      *testing.T
	base   string
	client *http.Client // the page and posts
	polls  *http.Client // the poll loop (nil: client)
	cursor string
	inbox  []testMsg       // what #inbox shows, in order
	shown  map[string]bool // ids with an #m<id> element
	page   map[string]bool // ids rendered by the server into the page
	pageRE *regexp.Regexp  // a message div on the page
}

func newChatJS(t *testing.T, e *testEnv) *chatJS {
	jar, _ := cookiejar.New(nil)
	return &chatJS{
		t: t, base: e.base(),
		client: &http.Client{Jar: jar, Transport: e.client.Transport, Timeout: 20 * time.Second},
		shown:  map[string]bool{}, page: map[string]bool{},
		pageRE: regexp.MustCompile(`<div class="message" id="m([0-9a-f-]{36})">`),
	}
}

// pollLoop is the connection a browser's poll loop uses, over path p: on
// net/http and the engine's first poll every poll comes on a new
// connection; on the re-poll path all come on one keep-alive connection
// that the engine holds from the start.
type pollLoop struct {
	e      *testEnv
	p      pollPath
	client *http.Client
	tr     *http.Transport
	mu     sync.Mutex
	addrs  []string // local addresses of the connections dialed
	mark   int64    // the held connection's polls through net/http after hold
}

// newPollLoop makes c's poll loop use path p.
func newPollLoop(e *testEnv, c *chatJS, p pollPath) *pollLoop {
	l := &pollLoop{e: e, p: p}
	l.tr = &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				l.mu.Lock()
				l.addrs = append(l.addrs, conn.LocalAddr().String())
				l.mu.Unlock()
			}
			return conn, err
		}}
	e.t.Cleanup(l.tr.CloseIdleConnections)
	l.client = &http.Client{Jar: c.client.Jar, Transport: l.tr, Timeout: 20 * time.Second}
	c.polls = l.client
	if p.repoll {
		l.hold()
	}
	return l
}

// dials returns the local addresses of the connections the loop dialed.
func (l *pollLoop) dials() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.addrs...)
}

// hold has the engine hold the loop's connection: a GET poll of the wall
// "hold" waits (net/http hands it to the engine) and is answered.
func (l *pollLoop) hold() {
	t := l.e.t
	t.Helper()
	ch := make(chan error, 1)
	go func() {
		resp, err := l.client.Get(l.e.base() + "/a/message/updates?wall=hold")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		ch <- err
	}()
	waitFor(t, "the engine to take over the hold poll", 5*time.Second, func() bool {
		d := l.dials()
		if len(d) != 1 {
			return false
		}
		st := l.e.statsAt(d[0])
		return st.started.Load() == 1 && st.done.Load() == 1
	})
	l.e.publish("hold", "wake")
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	l.mark = 1
}

// next prepares the loop's next poll: a poll on a new connection (all but
// the re-poll path) starts from a closed pool.
func (l *pollLoop) next() {
	if !l.p.repoll {
		l.tr.CloseIdleConnections()
	}
}

// parked waits until the loop's poll waits where the path has it wait
// (see pollCall.parked); before is pollTotals' started count before it.
func (l *pollLoop) parked(before int64) {
	t := l.e.t
	t.Helper()
	switch {
	case !l.p.engine:
		waitFor(t, "the poll to wait in its handler", 5*time.Second, func() bool {
			s, d := l.e.pollTotals()
			return s == before+1 && d == before
		})
	case !l.p.repoll:
		waitFor(t, "the engine to take over the poll", 5*time.Second, func() bool {
			s, d := l.e.pollTotals()
			return s == before+1 && d == before+1
		})
	}
}

// check checks that polls polls went their path: each on a connection of
// its own, through net/http; or all on the held connection, read by the
// engine.
func (l *pollLoop) check(polls int) {
	t := l.e.t
	t.Helper()
	d := l.dials()
	if !l.p.repoll {
		if len(d) != polls {
			t.Errorf("%d polls on %d connections, want one each", polls, len(d))
		}
		for _, a := range d {
			if n := l.e.statsAt(a).started.Load(); n != 1 {
				t.Errorf("connection %s: net/http handed %d polls to the server, want 1", a, n)
			}
		}
		return
	}
	if len(d) != 1 {
		t.Fatalf("%d connections, want the one the engine holds", len(d))
	}
	if n := l.e.statsAt(d[0]).started.Load(); n != l.mark {
		t.Errorf("%d re-polls went through net/http", n-l.mark)
	}
}

// loadPage is GET /: the browser stores the _xsrf cookie and the page shows
// the cached messages.
func (c *chatJS) loadPage() {
	c.t.Helper()
	resp, err := c.client.Get(c.base + "/")
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET /: %d", resp.StatusCode)
	}
	for _, m := range c.pageRE.FindAllStringSubmatch(string(b), -1) {
		c.page[m[1]] = true
		c.shown[m[1]] = true
	}
}

// cookieXSRF reads the token as chat.js does: /\b_xsrf=([^;]*)\b/ on
// document.cookie.
func (c *chatJS) cookieXSRF() string {
	c.t.Helper()
	u, _ := url.Parse(c.base + "/")
	var parts []string
	for _, ck := range c.client.Jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	m := chatJSCookieRE.FindStringSubmatch(strings.Join(parts, "; "))
	if m == nil {
		c.t.Fatalf("no _xsrf in document.cookie %q", parts)
	}
	return m[1]
}

// request sends a form-urlencoded POST like jQuery's $.ajax with $.param.
func (c *chatJS) request(path string, args url.Values) (int, []byte, error) {
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(args.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	client := c.client
	if path == "/a/message/updates" && c.polls != nil {
		client = c.polls
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// newMessage is chat.js's newMessage: the form minus next, _xsrf from the
// cookie; the returned message is shown at once.
func (c *chatJS) newMessage(body string) testMsg {
	c.t.Helper()
	code, b, err := c.request("/a/message/new", url.Values{"body": {body}, "_xsrf": {c.cookieXSRF()}})
	if err != nil || code != http.StatusOK {
		c.t.Fatalf("newMessage %q: %d %s %v", body, code, b, err)
	}
	m := decodeMsg(c.t, b)
	c.show(m)
	return m
}

func (c *chatJS) show(m testMsg) {
	if c.shown[m.ID] {
		return
	}
	c.shown[m.ID] = true
	c.inbox = append(c.inbox, m)
}

// poll is one round of updater.poll: it returns the messages of the
// answer (nil for an answer without "messages"), having applied them as
// onSuccess does.
func (c *chatJS) poll() ([]testMsg, error) {
	args := url.Values{"_xsrf": {c.cookieXSRF()}}
	if c.cursor != "" {
		args.Set("cursor", c.cursor)
	}
	code, b, err := c.request("/a/message/updates", args)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("poll: %d %s", code, b)
	}
	var resp struct {
		Messages *[]testMsg `json:"messages"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, err
	}
	if resp.Messages == nil {
		return nil, nil
	}
	msgs := *resp.Messages
	if len(msgs) == 0 {
		// chat.js reads messages[messages.length - 1].id: an exception.
		return nil, fmt.Errorf("empty messages list: %s", b)
	}
	c.cursor = msgs[len(msgs)-1].ID
	for _, m := range msgs {
		c.show(m)
	}
	return msgs, nil
}

// The whole chat.js flow over every path its poll loop can take: page,
// first poll (the whole cache at once), a poll that waits for the user's
// own post, another client's post, the open-redirect fix and the native
// form post.
func TestLegacyChatJS(t *testing.T) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, Config{}, 200)
		var before []string
		for _, b := range []string{"one", "two", "three"} {
			before = append(before, e.post("", b).ID)
		}
		c := newChatJS(t, e)
		loop := newPollLoop(e, c, p)
		polls := 0
		poll := func() ([]testMsg, error) {
			loop.next()
			polls++
			return c.poll()
		}
		c.loadPage()
		if len(c.page) != 3 {
			t.Fatalf("page shows %d messages, want 3", len(c.page))
		}

		// First poll: no cursor, the whole cache at once; dedup hides the
		// overlap with the page.
		msgs, err := poll()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 3 || msgs[0].ID != before[0] || msgs[2].ID != before[2] {
			t.Fatalf("first poll %+v", msgs)
		}
		if len(c.inbox) != 0 || c.cursor != before[2] {
			t.Fatalf("inbox %v cursor %q", c.inbox, c.cursor)
		}

		// Next poll waits; our own post shows at once and arrives by poll
		// too, shown once.
		type round struct {
			msgs []testMsg
			err  error
		}
		done := make(chan round, 1)
		loop.next()
		polls++
		mark, _ := e.pollTotals()
		go func() {
			m, err := c.pollDetached()
			done <- round{m, err}
		}()
		loop.parked(mark)
		select {
		case r := <-done:
			t.Fatalf("poll answered although nothing qualifies: %+v %v", r.msgs, r.err)
		case <-time.After(100 * time.Millisecond):
		}
		mine := c.newMessage("h\u00e9llo \u2603 \U0001F600 <b>")
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatal(r.err)
			}
			if len(r.msgs) != 1 || r.msgs[0] != mine {
				t.Fatalf("poll got %+v, want only %+v", r.msgs, mine)
			}
			c.cursor = r.msgs[0].ID
			c.show(r.msgs[0])
		case <-time.After(5 * time.Second):
			t.Fatal("poll not woken by the post")
		}
		if len(c.inbox) != 1 || c.inbox[0].Body != "h\u00e9llo \u2603 \U0001F600 <b>" || c.cursor != mine.ID {
			t.Fatalf("inbox %+v cursor %q", c.inbox, c.cursor)
		}

		// Another client's post arrives in order.
		other := e.post("", "from elsewhere")
		if msgs, err := poll(); err != nil || len(msgs) != 1 || msgs[0] != other {
			t.Fatalf("poll %+v %v", msgs, err)
		}

		// The open-redirect fix: a form post with an absolute next is
		// refused.
		code, _, err := c.request("/a/message/new", url.Values{"body": {"x"}, "_xsrf": {c.cookieXSRF()}, "next": {"http://evil.example/"}})
		if err != nil || code != http.StatusBadRequest {
			t.Fatalf("absolute next: %d %v", code, err)
		}
		// The native form post (no JavaScript) redirects back.
		noRedirect := *c.client
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		req, _ := http.NewRequest(http.MethodPost, c.base+"/a/message/new",
			strings.NewReader(url.Values{"body": {"form post"}, "_xsrf": {c.cookieXSRF()}, "next": {"/"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/" {
			t.Fatalf("form post: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if msgs, err := poll(); err != nil || len(msgs) != 1 || msgs[0].Body != "form post" {
			t.Fatalf("poll %+v %v", msgs, err)
		}
		if len(c.inbox) != 3 {
			t.Errorf("inbox %+v", c.inbox)
		}
		loop.check(polls)
	})
}

// pollDetached polls with the current cursor without touching the client's
// state (for a poll running beside the test goroutine).
func (c *chatJS) pollDetached() ([]testMsg, error) {
	cp := *c
	cp.shown = map[string]bool{}
	cp.inbox = nil
	return cp.poll()
}

// chatJSPoll is a poll as chat.js sends it ($.ajax with $.param).
func chatJSPoll(xsrf, cursor string) string {
	args := url.Values{"_xsrf": {xsrf}}
	if cursor != "" {
		args.Set("cursor", cursor)
	}
	return rawRequest(http.MethodPost, "/a/message/updates", args.Encode(),
		"Cookie: _xsrf="+xsrf, "X-Requested-With: XMLHttpRequest",
		"Content-Type: application/x-www-form-urlencoded; charset=UTF-8")
}

// 200 chat.js clients wait with the newest id as cursor; one post reaches
// each of them exactly once, over every path.
func TestLegacy200Pollers(t *testing.T) {
	const n = 200
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, Config{}, 200)
		last := e.post("", "before")
		c := newChatJS(t, e)
		c.loadPage()
		xsrf := c.cookieXSRF()

		conns := make([]*wireConn, n)
		for i := range conns {
			conns[i] = e.dial()
		}
		if p.repoll {
			e.hold(conns...)
		}
		calls := make([]*pollCall, n)
		for i, wc := range conns {
			calls[i] = e.startPollOn(p, wc, chatJSPoll(xsrf, last.ID))
		}
		for _, pc := range calls {
			pc.parked()
		}
		notAnswered(t, 100*time.Millisecond, calls...)
		m := c.newMessage("to all")
		for _, pc := range calls {
			r := pc.answer()
			var resp struct{ Messages []testMsg }
			if err := json.Unmarshal(r.Body, &resp); err != nil || r.Status != http.StatusOK {
				t.Fatalf("poller: %v %v", r, err)
			}
			if len(resp.Messages) != 1 || resp.Messages[0] != m {
				t.Fatalf("poller got %+v, want exactly %+v", resp.Messages, m)
			}
		}
		waitFor(t, "pollers to leave", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
	})
}
