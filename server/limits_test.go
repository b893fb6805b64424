package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// Clients on loopback: 127.0.0.1 and 127.0.0.2 are two addresses of this
// host (Linux routes all of 127.0.0.0/8 to lo), so two clients of one
// test look like two hosts to the server.
const otherClient = "127.0.0.2"

// dialFrom connects to addr from local address ip.
func dialFrom(ip, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// dialWireFrom is dialWire from local address ip.
func dialWireFrom(t *testing.T, ip, addr string) *wireConn {
	t.Helper()
	c, err := dialFrom(ip, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wireConn{t: t, c: c, br: bufio.NewReader(c)}
}

// clientFrom is an HTTP client whose connections come from ip.
func clientFrom(ip string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, _, addr string) (net.Conn, error) { return dialFrom(ip, addr) },
	}}
}

// postFrom posts body to the default wall from client c and returns the
// answer.
func (e *testEnv) postFrom(c *http.Client, body string, headers ...string) *http.Response {
	e.t.Helper()
	req := formRequest("/a/message/new", url.Values{"body": {body}})
	req.RequestURI = ""
	u, _ := url.Parse(e.base() + "/a/message/new")
	req.URL, req.Host = u, u.Host
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// Past its burst, a client's posts get 429 with a Retry-After, and nothing
// is stored; another client is unaffected; the refusals are counted.
func TestPostRateLimit(t *testing.T) {
	e := newTestEnv(t, Config{PostRate: 0.5, PostBurst: 3}, 50)
	one, two := clientFrom("127.0.0.1"), clientFrom(otherClient)
	for i := range 3 {
		if r := e.postFrom(one, "burst "+strconv.Itoa(i)); r.StatusCode != http.StatusOK {
			t.Fatalf("post %d of the burst: %d", i, r.StatusCode)
		}
	}
	r := e.postFrom(one, "one too many")
	if r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("post past the burst: %d", r.StatusCode)
	}
	// One token every 2 s: the next is 2 s away at most.
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if r := e.postFrom(two, "another client"); r.StatusCode != http.StatusOK {
		t.Fatalf("another client's post: %d", r.StatusCode)
	}
	if last := e.hub.Lookup("main").Last(); last != 4 {
		t.Fatalf("%d messages stored, want 4", last)
	}
	fams := scrape(t, e.srv)
	wantMetric(t, fams, 1, "wall_refusals_total", "reason", "rate_limited")
	wantMetric(t, fams, 4, "wall_posts_total")
}

// Behind a trusted proxy, the client is the address the proxy names in
// X-Real-IP (else the right-most untrusted one of X-Forwarded-For); from
// any other peer those headers are ignored.
func TestPostRateLimitTrustedProxy(t *testing.T) {
	proxy := netip.MustParsePrefix("127.0.0.1/32")
	e := newTestEnv(t, Config{PostRate: 0.01, PostBurst: 1, TrustedProxies: []netip.Prefix{proxy}}, 50)
	viaProxy, direct := clientFrom("127.0.0.1"), clientFrom(otherClient)
	for _, tc := range []struct {
		c       *http.Client
		headers []string
		want    int
	}{
		{viaProxy, []string{"X-Real-IP", "192.0.2.1"}, 200},
		{viaProxy, []string{"X-Real-IP", "192.0.2.1"}, 429},
		{viaProxy, []string{"X-Real-IP", "192.0.2.2"}, 200},
		// X-Forwarded-For: the right-most address that is not the proxy.
		{viaProxy, []string{"X-Forwarded-For", "192.0.2.1, 192.0.2.3, 127.0.0.1"}, 200},
		{viaProxy, []string{"X-Forwarded-For", "192.0.2.9, 192.0.2.3"}, 429},
		// IPv6 clients are counted by /64.
		{viaProxy, []string{"X-Real-IP", "2001:db8:1:2::1"}, 200},
		{viaProxy, []string{"X-Real-IP", "2001:db8:1:2::ffff"}, 429},
		// Not a trusted proxy: its headers are the client's own words.
		{direct, []string{"X-Real-IP", "192.0.2.50"}, 200},
		{direct, []string{"X-Real-IP", "192.0.2.51"}, 429},
	} {
		if r := e.postFrom(tc.c, "x", tc.headers...); r.StatusCode != tc.want {
			t.Fatalf("post with %v: %d, want %d", tc.headers, r.StatusCode, tc.want)
		}
	}
}

// WebSocket frame posts share the client's bucket: past the burst a
// frame is answered with an error frame naming its id, and not stored.
func TestFramePostRateLimit(t *testing.T) {
	e := newTestEnv(t, Config{PostRate: 0.01, PostBurst: 2}, 50)
	c := e.mustDialWS("/ws", "main", 1)
	defer c.Close()
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for _, id := range ids {
		if err := c.WriteJSON(map[string]string{"body": "frame", "id": id}); err != nil {
			t.Fatal(err)
		}
	}
	var stored int
	for range 3 {
		var f struct {
			Error  string `json:"error"`
			ID     string `json:"id"`
			Status int    `json:"status"`
			Seq    uint64 `json:"seq"`
		}
		if err := json.Unmarshal(readFrame(t, c, 5*time.Second), &f); err != nil {
			t.Fatal(err)
		}
		switch {
		case f.Error != "":
			if f.Error != "too many posts: slow down" || f.ID != ids[2] || f.Status != 429 {
				t.Fatalf("error frame %+v, want the rate limit for %s", f, ids[2])
			}
		case f.Seq > 0:
			stored++
		}
	}
	if stored != 2 || e.hub.Lookup("main").Last() != 2 {
		t.Fatalf("%d frames stored, want 2", stored)
	}
	// A form post from the same address has no token left either.
	if code, _ := e.postForm("/a/message/new", url.Values{"body": {"form"}}); code != http.StatusTooManyRequests {
		t.Fatalf("form post after the frames: %d", code)
	}
	wantMetric(t, scrape(t, e.srv), 2, "wall_refusals_total", "reason", "rate_limited")
}

// wantTooMany checks a 429 for too many connections.
func wantTooMany(t *testing.T, r *wireResponse) {
	t.Helper()
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" ||
		string(r.Body) != `{"error": "too many connections from this client"}` {
		t.Fatalf("want 429 too many connections, got:\n%s%s", r.Head, r.Body)
	}
}

// A client holds at most MaxConnsPerClient WebSockets, event streams and
// waiting long-polls together; past it, 429 with Retry-After on every
// transport, the engine's own answers included; another client is
// unaffected; a connection that ends, or a poll that is answered, frees
// its place.
func TestMaxConnsPerClient(t *testing.T) {
	e := newMainEnv(t, Config{MaxConnsPerClient: 3}, 50)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/ws?wall=w", nil)
	if err != nil {
		t.Fatal(err)
	}
	sse := e.openSSE("/sse?wall=w")
	// A long-poll that waits in the engine; its connection is then held
	// by the engine, which reads the next polls itself.
	pc := dialWire(t, e.addr)
	pc.send(pollReq("GET", url.Values{"wall": {"hold"}, "cursor": {"0"}}))
	waitFor(t, "three connections held", 5*time.Second, func() bool { return e.srv.streams.Len() == 3 })

	// The fourth, on each transport.
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/ws?wall=w", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth connection, a WebSocket: %v %v", err, resp)
	}
	wc := dialWire(t, e.addr)
	wc.send(sseRequest("/sse?wall=w"))
	wantTooMany(t, wc.response(5*time.Second))
	wc = dialWire(t, e.addr)
	wc.send(pollReq("GET", url.Values{"wall": {"w"}, "cursor": {"0"}}))
	wantTooMany(t, wc.response(5*time.Second))
	// Another client has places of its own.
	other := dialWireFrom(t, otherClient, e.addr)
	other.send(sseRequest("/sse?wall=w"))
	startSSE(t, other)

	// The poll is answered: its place is free, and the engine reads the
	// client's next poll on the held connection and admits it.
	e.publish("hold", "wake")
	if r := pc.response(5 * time.Second); r.Status != http.StatusOK {
		t.Fatalf("held poll: %v", r)
	}
	ws2, _, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/ws?wall=w", nil)
	if err != nil {
		t.Fatalf("a WebSocket once the poll was answered: %v", err)
	}
	defer ws2.Close()
	pc.send(pollReq("GET", url.Values{"wall": {"hold"}, "cursor": {"1." + e.hub.Lookup("hold").Epoch()}}))
	r := pc.response(5 * time.Second)
	wantTooMany(t, r)
	if r.Closes() {
		t.Fatal("the engine closed the connection after a 429; it may poll again")
	}
	// A WebSocket that ends frees its place. ws2 is counted just after
	// its handshake is answered: wait for it, so that the count below
	// falls only when ws has gone.
	waitFor(t, "both WebSockets counted", 5*time.Second, func() bool { return e.srv.streams.Count(wsTransport) == 2 })
	ws.Close()
	// The place is released before the connection leaves the count.
	waitFor(t, "the WebSocket gone", 5*time.Second, func() bool { return e.srv.streams.Count(wsTransport) == 1 })
	pc.send(pollReq("GET", url.Values{"wall": {"hold"}, "cursor": {"0"}}))
	if r := pc.response(5 * time.Second); r.Status != http.StatusOK { // a message: answered at once
		t.Fatalf("a poll once a WebSocket ended: %v", r)
	}
	sse.c.Close()
	wantMetric(t, scrape(t, e.srv), 4, "wall_refusals_total", "reason", "too_many_connections")
}
