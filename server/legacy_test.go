package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
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
	client *http.Client
	cursor string
	inbox  []testMsg       // what #inbox shows, in order
	shown  map[string]bool // ids with an #m<id> element
	page   map[string]bool // ids rendered by the server into the page
	pageRE *regexp.Regexp  // a message div on the page
}

func newChatJS(t *testing.T, e *testEnv) *chatJS {
	jar, _ := cookiejar.New(nil)
	return &chatJS{
		t: t, base: e.ts.URL,
		client: &http.Client{Jar: jar, Transport: e.client.Transport, Timeout: 20 * time.Second},
		shown:  map[string]bool{}, page: map[string]bool{},
		pageRE: regexp.MustCompile(`<div class="message" id="m([0-9a-f-]{36})">`),
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
	resp, err := c.client.Do(req)
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

func TestLegacyChatJS(t *testing.T) {
	e := newTestEnv(t, Config{}, 200)
	var before []string
	for _, b := range []string{"one", "two", "three"} {
		before = append(before, e.post("", b).ID)
	}
	c := newChatJS(t, e)
	c.loadPage()
	if len(c.page) != 3 {
		t.Fatalf("page shows %d messages, want 3", len(c.page))
	}

	// First poll: no cursor, the whole cache at once; dedup hides the
	// overlap with the page.
	msgs, err := c.poll()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || msgs[0].ID != before[0] || msgs[2].ID != before[2] {
		t.Fatalf("first poll %+v", msgs)
	}
	if len(c.inbox) != 0 || c.cursor != before[2] {
		t.Fatalf("inbox %v cursor %q", c.inbox, c.cursor)
	}

	// Next poll waits; our own post shows at once and arrives by poll too,
	// shown once.
	type round struct {
		msgs []testMsg
		err  error
	}
	done := make(chan round, 1)
	go func() {
		m, err := c.pollDetached()
		done <- round{m, err}
	}()
	e.parked(1)
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
	if msgs, err := c.poll(); err != nil || len(msgs) != 1 || msgs[0] != other {
		t.Fatalf("poll %+v %v", msgs, err)
	}

	// The open-redirect fix: a form post with an absolute next is refused.
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
	if msgs, err := c.poll(); err != nil || len(msgs) != 1 || msgs[0].Body != "form post" {
		t.Fatalf("poll %+v %v", msgs, err)
	}
}

// pollDetached polls with the current cursor without touching the client's
// state (for a poll running beside the test goroutine).
func (c *chatJS) pollDetached() ([]testMsg, error) {
	cp := *c
	cp.shown = map[string]bool{}
	cp.inbox = nil
	return cp.poll()
}

// 200 chat.js clients wait with the newest id as cursor; one post reaches
// each of them exactly once.
func TestLegacy200Pollers(t *testing.T) {
	const n = 200
	e := newTestEnv(t, Config{}, 200)
	last := e.post("", "before")
	c := newChatJS(t, e)
	c.loadPage()
	xsrf := c.cookieXSRF()

	type answer struct {
		msgs []testMsg
		err  error
	}
	answers := make(chan answer, n)
	for i := 0; i < n; i++ {
		cl := &chatJS{t: t, base: c.base, client: c.client, cursor: last.ID, shown: map[string]bool{}}
		go func() {
			args := url.Values{"_xsrf": {xsrf}, "cursor": {cl.cursor}}
			code, b, err := cl.request("/a/message/updates", args)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("status %d %s", code, b)
			}
			var resp struct{ Messages []testMsg }
			if err == nil {
				err = json.Unmarshal(b, &resp)
			}
			answers <- answer{resp.Messages, err}
		}()
	}
	e.parked(n)
	m := c.newMessage("to all")
	deadline := time.After(10 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case a := <-answers:
			if a.err != nil {
				t.Fatalf("poller: %v", a.err)
			}
			if len(a.msgs) != 1 || a.msgs[0] != m {
				t.Fatalf("poller got %+v, want exactly %+v", a.msgs, m)
			}
		case <-deadline:
			t.Fatalf("%d of %d pollers answered", i, n)
		}
	}
	waitFor(t, "pollers to leave", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
}
