package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"wall/wall"

	"github.com/gorilla/websocket"
)

// wsURL is the WebSocket URL of path (with its query) on the test server.
func (e *testEnv) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(e.ts.URL, "http") + path
}

// dialWS opens a WebSocket to path; hdr may be nil.
func (e *testEnv) dialWS(path string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	return d.Dial(e.wsURL(path), hdr)
}

// mustDialWS dials path and waits until the connection is subscribed to
// its wall (subs is the number of subscribers expected then).
func (e *testEnv) mustDialWS(path, wallName string, subs int) *websocket.Conn {
	e.t.Helper()
	c, resp, err := e.dialWS(path, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial %s: %v (status %d)", path, err, status)
	}
	e.t.Cleanup(func() { c.Close() })
	e.subscribed(wallName, subs)
	return c
}

// subscribed waits until wall name has n live subscribers.
func (e *testEnv) subscribed(name string, n int) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d subscribers on %s", n, name), 5*time.Second, func() bool {
		w := e.hub.Lookup(name)
		return w != nil && w.Subscribers() == n
	})
}

// readFrame reads one data frame within d.
func readFrame(t *testing.T, c *websocket.Conn, d time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	kind, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if kind != websocket.TextMessage {
		t.Fatalf("frame type %d, want text", kind)
	}
	return b
}

// readWSMsg reads one message frame.
func readWSMsg(t *testing.T, c *websocket.Conn) testMsg {
	t.Helper()
	b := readFrame(t, c, 5*time.Second)
	m := decodeMsg(t, b)
	if m.ID == "" || m.Seq == 0 {
		t.Fatalf("frame %s is not a message", b)
	}
	return m
}

// readWSError reads one frame that must be an error frame.
func readWSError(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	b := readFrame(t, c, 5*time.Second)
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	msg, ok := f["error"].(string)
	status, _ := f["status"].(float64)
	if !ok || msg == "" || len(f) != 2 || status < 400 || status > 599 {
		t.Fatalf("frame %s is not an error frame (error, status)", b)
	}
	return msg
}

// expectClose reads until the connection ends and checks the close code.
func expectClose(t *testing.T, c *websocket.Conn, code int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err == nil {
			t.Logf("frame before close: %.80s", b)
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code {
			t.Fatalf("connection ended with %v, want close %d", err, code)
		}
		return
	}
}

func sendJSON(t *testing.T, c *websocket.Conn, s string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		t.Fatalf("write %s: %v", s, err)
	}
}

func TestWSPostReachesEverySubscriber(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	a := e.mustDialWS("/ws", "main", 1)
	b := e.mustDialWS("/chatsocket", "main", 2)
	c := e.mustDialWS("/ws?wall=main", "main", 3)
	other := e.mustDialWS("/ws?wall=other", "other", 1)

	// On open nothing is sent: the first frame is the first message.
	sendJSON(t, a, `{"body": "  hi <b>there</b>  ", "_xsrf": "ignored", "next": "/"}`)
	var got []testMsg
	for _, conn := range []*websocket.Conn{a, b, c} {
		got = append(got, readWSMsg(t, conn))
	}
	stored := e.hub.Lookup("main").Messages()
	if len(stored) != 1 {
		t.Fatalf("cache holds %d messages", len(stored))
	}
	for _, m := range got {
		if m.ID != stored[0].ID || m.Seq != 1 || m.Body != "hi <b>there</b>" || m.HTML != stored[0].HTML {
			t.Errorf("frame %+v, stored %+v", m, stored[0])
		}
	}
	if !uuid4RE.MatchString(got[0].ID) {
		t.Errorf("id %q", got[0].ID)
	}

	// The frame is the stored JSON, byte for byte; an HTTP post reaches
	// WebSocket subscribers too.
	e.post("", "by http")
	for _, conn := range []*websocket.Conn{a, b, c} {
		if f := readFrame(t, conn, 5*time.Second); string(f) != string(e.hub.Lookup("main").Messages()[1].JSON) {
			t.Errorf("frame %s", f)
		}
	}
	// The other wall saw neither: its first frame is its own message.
	sendJSON(t, other, `{"body": "other"}`)
	if om := readWSMsg(t, other); om.Body != "other" || om.Seq != 1 {
		t.Errorf("other wall got %+v", om)
	}
}

func TestWSCatchUp(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	var ids []string
	for i := 1; i <= 5; i++ {
		ids = append(ids, e.publish("", "m"+strconv.Itoa(i)).ID)
	}
	for _, cursor := range []string{"2", ids[1]} {
		t.Run(cursor, func(t *testing.T) {
			last := e.hub.Lookup("main").Last()
			c := e.mustDialWS("/ws?cursor="+cursor, "main", 1)
			for want := uint64(3); want <= last; want++ {
				if m := readWSMsg(t, c); m.Seq != want {
					t.Fatalf("catch-up frame seq %d, want %d", m.Seq, want)
				}
			}
			live := e.publish("", "live")
			if m := readWSMsg(t, c); m.Seq != live.Seq || m.ID != live.ID {
				t.Fatalf("live frame %+v, want seq %d", m, live.Seq)
			}
			c.Close()
			e.subscribed("main", 0)
		})
	}
	// The newest cursor: nothing to catch up, live only.
	last := e.hub.Lookup("main").Last()
	c := e.mustDialWS("/ws?cursor="+strconv.FormatUint(last, 10), "main", 1)
	m := e.publish("", "next")
	if got := readWSMsg(t, c); got.Seq != m.Seq {
		t.Fatalf("frame seq %d, want %d", got.Seq, m.Seq)
	}
}

// Posts keep coming while clients connect with a cursor: each sees every
// seq after its cursor exactly once, in order.
func TestWSCatchUpDuringPosts(t *testing.T) {
	// Fewer posts than sendQueueMax: however the goroutines are
	// scheduled, no subscriber can be cut off as slow.
	const total = sendQueueMax - 16
	e := newTestEnv(t, Config{}, 1000)
	for i := 0; i < 20; i++ {
		e.publish("", "seed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	posterDone := make(chan error, 1)
	go func() {
		for i := 0; i < total; i++ {
			if _, _, err := e.broker.Publish(ctx, wall.Post{Wall: "main", ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Body: "p"}); err != nil {
				posterDone <- err
				return
			}
			if i%4 == 0 {
				time.Sleep(100 * time.Microsecond) // let connections interleave
			}
		}
		posterDone <- nil
	}()
	final := uint64(20 + total)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cursor := e.hub.Lookup("main").Last() - uint64(k)
			c, _, err := e.dialWS("/ws?cursor="+strconv.FormatUint(cursor, 10), nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			want := cursor + 1
			for want <= final {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, b, err := c.ReadMessage()
				if err != nil {
					errs <- fmt.Errorf("cursor %d: waiting for seq %d: %v", cursor, want, err)
					return
				}
				var m testMsg
				if err := json.Unmarshal(b, &m); err != nil || m.Seq != want {
					errs <- fmt.Errorf("cursor %d: frame %.60s, want seq %d", cursor, b, want)
					return
				}
				want++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-posterDone; err != nil {
		t.Fatal(err)
	}
}

// A cursor older than the cache: {"missed": N} first, then the cache.
func TestWSEvictedCursor(t *testing.T) {
	e := newTestEnv(t, Config{}, 5)
	first := e.publish("", "gone")
	for i := 0; i < 10; i++ {
		e.publish("", "x") // seqs 2..11; the cache holds 7..11
	}
	for _, tc := range []struct{ cursor, frame string }{
		{"2", `{"missed":4}`},
		{first.ID, `{"reset":true}`},
		{"99", `{"reset":true}`},
		{"2." + first.Epoch, `{"missed":4}`},
		{"8.0123456789abcdef", `{"reset":true}`}, // another epoch: its seq means nothing here
		{"a b\x00\"", `{"reset":true}`},          // any cursor parses; unknown is a reset
	} {
		t.Run(tc.cursor, func(t *testing.T) {
			c := e.mustDialWS("/ws?cursor="+url.QueryEscape(tc.cursor), "main", 1)
			if f := readFrame(t, c, 5*time.Second); string(f) != tc.frame {
				t.Fatalf("first frame %s, want %s", f, tc.frame)
			}
			for want := uint64(7); want <= 11; want++ {
				if m := readWSMsg(t, c); m.Seq != want {
					t.Fatalf("frame seq %d, want %d", m.Seq, want)
				}
			}
			c.Close()
			e.subscribed("main", 0)
		})
	}
}

// TestCursorAcrossTransports: the cursor of a WebSocket frame resumes a
// long-poll, and a long-poll's cursor resumes a WebSocket (PROTOCOL.md part
// 3, "Cursors and epochs").
func TestCursorAcrossTransports(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	c := e.mustDialWS("/ws", "main", 1)
	e.publish("", "one")
	e.publish("", "two")
	readWSMsg(t, c)
	m := readWSMsg(t, c)
	if m.Seq != 2 || m.Cursor != "2."+e.hub.Wall("main").Epoch() {
		t.Fatalf("frame seq %d cursor %q", m.Seq, m.Cursor)
	}
	e.publish("", "three")
	p := e.pollNow(url.Values{"cursor": {m.Cursor}})
	if !equalSeqs(seqs(*p.Messages), []uint64{3}) || p.Reset || p.Missed != 0 {
		t.Fatalf("poll from the frame's cursor: %+v", p)
	}
	e.publish("", "four")
	c2 := e.mustDialWS("/ws?cursor="+url.QueryEscape(*p.Cursor), "main", 2)
	if m := readWSMsg(t, c2); m.Seq != 4 {
		t.Fatalf("WebSocket from the poll's cursor: first frame seq %d, want 4", m.Seq)
	}
}

func TestWSBadFrames(t *testing.T) {
	e := newTestEnv(t, Config{BodyLimit: 100}, 10)
	a := e.mustDialWS("/ws", "main", 1)
	b := e.mustDialWS("/ws", "main", 2)
	for _, f := range []string{
		`not json`,
		`{"body": 42}`,
		`{}`,
		`{"body": null}`,
		`null`,
		`[]`,
		`"body"`,
		`{"body": ""}`,
		`{"body": " \u00a0\u3000 "}`,
		`{"body": "\u0001"}`,
		`{"body": "` + strings.Repeat("x", 101) + `"}`,
	} {
		sendJSON(t, a, f)
		msg := readWSError(t, a)
		if strings.Contains(f, "xxx") && !strings.Contains(msg, "too large") {
			t.Errorf("oversized body: error %q", msg)
		}
	}
	// Nothing was broadcast: the next message is the first for everyone.
	sendJSON(t, a, `{"body": "fine"}`)
	for _, c := range []*websocket.Conn{a, b} {
		if m := readWSMsg(t, c); m.Seq != 1 || m.Body != "fine" {
			t.Fatalf("got %+v", m)
		}
	}
	if n := len(e.hub.Lookup("main").Messages()); n != 1 {
		t.Fatalf("cache holds %d messages", n)
	}
	// A body at the limit is fine; a binary frame is read like text.
	a.WriteMessage(websocket.BinaryMessage, []byte(`{"body": "`+strings.Repeat("y", 100)+`"}`))
	for _, c := range []*websocket.Conn{a, b} {
		if m := readWSMsg(t, c); m.Seq != 2 || len(m.Body) != 100 {
			t.Fatalf("got %+v", m)
		}
	}
}

// A frame over the read limit ends the connection with 1009; others go on.
func TestWSFrameTooBig(t *testing.T) {
	e := newTestEnv(t, Config{BodyLimit: 100}, 10)
	a := e.mustDialWS("/ws", "main", 1)
	b := e.mustDialWS("/ws", "main", 2)
	big := `{"body": "` + strings.Repeat("z", 100*6+1024) + `"}`
	a.WriteMessage(websocket.TextMessage, []byte(big))
	expectClose(t, a, websocket.CloseMessageTooBig)
	e.subscribed("main", 1)
	e.post("", "still here")
	if m := readWSMsg(t, b); m.Seq != 1 || m.Body != "still here" {
		t.Fatalf("got %+v", m)
	}
}

// Invalid UTF-8 in a text frame ends the connection with 1007; nothing is
// broadcast.
func TestWSInvalidUTF8(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	a := e.mustDialWS("/ws", "main", 1)
	b := e.mustDialWS("/ws", "main", 2)
	a.WriteMessage(websocket.TextMessage, []byte("{\"body\": \"\xff\"}"))
	expectClose(t, a, websocket.CloseInvalidFramePayloadData)
	e.subscribed("main", 1)
	e.post("", "after")
	if m := readWSMsg(t, b); m.Seq != 1 || m.Body != "after" {
		t.Fatalf("got %+v", m)
	}
}

func TestWSHandshake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		path    string
		origin  string
		code    int // 0: upgraded
		sameURL bool
	}{
		{name: "no origin", path: "/ws"},
		{name: "same host", path: "/ws", sameURL: true},
		{name: "same host, legacy path", path: "/chatsocket", sameURL: true},
		{name: "cross origin", path: "/ws", origin: "http://evil.example", code: 403},
		{name: "cross origin, legacy path", path: "/chatsocket", origin: "http://evil.example", code: 403},
		{name: "allowed origin", cfg: Config{AllowedOrigins: []string{"http://evil.example"}}, path: "/ws", origin: "http://evil.example"},
		{name: "other origin not allowed", cfg: Config{AllowedOrigins: []string{"http://good.example"}}, path: "/ws", origin: "http://evil.example", code: 403},
		{name: "any origin", cfg: Config{AllowedOrigins: []string{"*"}}, path: "/ws", origin: "http://evil.example"},
		{name: "bad wall", path: "/ws?wall=bad!", code: 400},
		{name: "any cursor", path: "/ws?cursor=a+b%00%22"}, // unknown: the whole cache and reset
		{name: "plain GET", path: "/ws", code: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, tc.cfg, 10)
			if tc.name == "plain GET" {
				code, body := e.get(tc.path)
				if code != tc.code {
					t.Fatalf("plain GET: %d %s", code, body)
				}
				return
			}
			hdr := http.Header{}
			if tc.origin != "" {
				hdr.Set("Origin", tc.origin)
			}
			if tc.sameURL {
				hdr.Set("Origin", e.ts.URL)
			}
			c, resp, err := e.dialWS(tc.path, hdr)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf("upgraded, want %d", tc.code)
			}
			if resp == nil || resp.StatusCode != tc.code {
				t.Fatalf("dial: %v %v, want %d", err, resp, tc.code)
			}
			if len(e.hub.Names()) != 0 {
				t.Errorf("refused handshake left walls: %v", e.hub.Names())
			}
		})
	}
}

// A subscriber that stops reading is cut off (close 1008 or a dropped
// connection) while another keeps receiving everything.
func TestWSSlowConsumer(t *testing.T) {
	const maxPosts = 3000 // ~50 MB: far more than any socket buffers
	e := newTestEnv(t, Config{}, 10)
	// The stalled client never reads: once its socket buffers fill, the
	// server's writes to it block and its send queue overflows. Its
	// receive buffer is kept small, or the kernel (tcp_rmem up to 32 MiB
	// here) would absorb every post.
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(128 << 10)
		}
		return c, err
	}}
	stalled, _, err := d.Dial(e.wsURL("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	e.subscribed("main", 1)
	fast := e.mustDialWS("/ws", "main", 2)

	var fastGot atomic.Uint64 // seq of the last message the fast client read
	fastErr := make(chan error, 1)
	go func() {
		for want := uint64(1); ; want++ {
			fast.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, b, err := fast.ReadMessage()
			if err != nil {
				fastErr <- fmt.Errorf("waiting for seq %d: %v", want, err)
				return
			}
			var m testMsg
			if err := json.Unmarshal(b, &m); err != nil || m.Seq != want {
				fastErr <- fmt.Errorf("frame %.60s, want seq %d", b, want)
				return
			}
			fastGot.Store(want)
		}
	}()
	// fastAt waits until the fast client has read up to seq.
	fastAt := func(seq uint64) {
		waitFor(t, fmt.Sprintf("the fast client to read seq %d", seq), 10*time.Second, func() bool {
			select {
			case err := <-fastErr:
				t.Fatalf("fast client: %v", err)
			default:
			}
			return fastGot.Load() >= seq
		})
	}

	big := strings.Repeat(".", 8<<10)
	start := time.Now()
	posted := uint64(0)
	for e.hub.Lookup("main").Subscribers() == 2 {
		if posted == maxPosts {
			t.Fatalf("stalled client still subscribed after %d posts of 8 KiB", posted)
		}
		// Keep the fast client well within its queue, however slowly it
		// is scheduled: only the stalled one may overflow.
		if posted%64 == 0 && posted >= 64 {
			fastAt(posted - 64)
		}
		e.publish("", big)
		posted++
	}
	t.Logf("stalled client cut off after %d posts, %v", posted, time.Since(start))
	// The cut comes when the queue overflows, not when a write blocked on
	// the stalled peer finally times out.
	if d := time.Since(start); d >= writeWait {
		t.Errorf("stalled client cut off only after %v (writeWait %v)", d, writeWait)
	}
	// The fast client gets everything, before and after the cut.
	for i := 0; i < 10; i++ {
		e.post("", "after the cut")
		posted++
	}
	fastAt(posted)

	// The stalled client sees consecutive messages, then the cut.
	want := uint64(1)
	for {
		stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := stalled.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			var ne net.Error
			switch {
			case errors.As(err, &ce) && ce.Code == websocket.ClosePolicyViolation:
			case errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure: // dropped
			case errors.As(err, &ce):
				t.Fatalf("closed with %d, want 1008", ce.Code)
			case errors.As(err, &ne) && ne.Timeout():
				t.Fatalf("stalled client not cut off after %d messages: %v", want-1, err)
			}
			t.Logf("stalled client read %d messages, then: %v", want-1, err)
			break
		}
		var m testMsg
		if err := json.Unmarshal(b, &m); err != nil || m.Seq != want {
			t.Fatalf("stalled client: frame %.60s, want seq %d", b, want)
		}
		want++
	}
	if want > posted {
		t.Fatalf("stalled client received all %d messages: not cut off", posted)
	}

	// It resumes from its cursor: the messages it missed are older than
	// the 10-message cache, so it is told how many, then gets the cache.
	back := e.mustDialWS("/ws?cursor="+strconv.FormatUint(want-1, 10), "main", 2)
	var gap struct{ Missed uint64 }
	if b := readFrame(t, back, 5*time.Second); json.Unmarshal(b, &gap) != nil || gap.Missed != posted-10-(want-1) {
		t.Fatalf("resumed at seq %d of %d: first frame %s, want missed %d", want-1, posted, b, posted-10-(want-1))
	}
	for seq := posted - 9; seq <= posted; seq++ {
		if m := readWSMsg(t, back); m.Seq != seq {
			t.Fatalf("resumed: seq %d, want %d", m.Seq, seq)
		}
	}
}

// hub.Close sends every WebSocket a 1001 close and srv.Wait returns.
func TestWSShutdown(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	var conns []*websocket.Conn
	for i := 0; i < 5; i++ {
		conns = append(conns, e.mustDialWS("/ws?wall=w"+strconv.Itoa(i%2), "w"+strconv.Itoa(i%2), i/2+1))
	}
	closed := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					closed <- err
					return
				}
			}
		}()
	}
	start := time.Now()
	e.hub.Close()
	for range conns {
		select {
		case err := <-closed:
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart || !strings.HasPrefix(ce.Text, `{"reconnect_ms": `) {
				t.Errorf("connection ended with %v, want close 1012 with a reconnect hint", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no close frame within 5s of shutdown")
		}
	}
	waitDone(t, "srv.Wait", 5*time.Second, e.srv.Wait)
	t.Logf("shutdown took %v", time.Since(start))
	// New handshakes are refused.
	if c, resp, err := e.dialWS("/ws", nil); err == nil {
		c.Close()
		t.Error("upgraded after shutdown")
	} else if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after shutdown: %v %v", err, resp)
	}
}

// A client that does not answer the close frame does not hold shutdown
// beyond the close grace period.
func TestWSShutdownSilentPeer(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	c := e.mustDialWS("/ws", "main", 1)
	_ = c // never read: the close frame is never answered
	e.hub.Close()
	waitDone(t, "srv.Wait", closeGrace+3*time.Second, e.srv.Wait)
}

// Clients that hang up mid-upgrade or mid-stream leave no goroutine, no
// subscriber and no wall behind.
func TestWSHangUps(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	e.post("warm", "up")
	c := e.mustDialWS("/ws?wall=warm", "warm", 1)
	c.Close()
	e.subscribed("warm", 0)
	e.client.CloseIdleConnections()
	waitFor(t, "idle server", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
	base := goroutineBaseline()

	// Mid-upgrade: the request is sent, the connection closed at once.
	for i := 0; i < 20; i++ {
		nc, err := net.Dial("tcp", e.ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(nc, "GET /ws?wall=hang HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		nc.Close()
	}
	// Mid-stream: subscribed, then the TCP connection drops without a
	// close frame.
	var conns []*websocket.Conn
	for i := 0; i < 20; i++ {
		conns = append(conns, e.mustDialWS("/ws?wall=hang2&cursor=0", "hang2", i+1))
	}
	for _, c := range conns {
		c.NetConn().Close()
	}
	waitFor(t, "handlers to return", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
	waitGoroutines(t, base)
	for _, name := range []string{"hang", "hang2"} {
		if e.hub.Lookup(name) != nil {
			t.Errorf("wall %s kept after its clients left", name)
		}
	}
	// Normal service afterwards.
	c = e.mustDialWS("/ws?wall=hang2", "hang2", 1)
	m := e.post("hang2", "after")
	if got := readWSMsg(t, c); got != m {
		t.Fatalf("got %+v, want %+v", got, m)
	}
}

// A client that has its handshake answer is already subscribed: a message
// posted right after the dial returns reaches it, even without a cursor.
func TestWSSubscribedAtHandshake(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	for i := range 30 {
		c, _, err := e.dialWS("/ws?wall=hs", nil)
		if err != nil {
			t.Fatal(err)
		}
		m := e.publish("hs", "right after the dial")
		if got := readWSMsg(t, c); got.ID != m.ID {
			t.Fatalf("dial %d: got %+v, want the message posted after the handshake", i, got)
		}
		c.Close()
	}
}
