package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wall/wall/presence"
	"wall/wall/redistest"
)

// instanceClients are the clients a test holds on one instance, each on
// a connection of its own: WebSockets, event streams and long-pollers
// that poll again as soon as answered.
type instanceClients struct {
	t      *testing.T
	ws     []*websocket.Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func connectClients(t *testing.T, base, wallName string, nWS, nSSE, nPoll int) *instanceClients {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &instanceClients{t: t, cancel: cancel}
	t.Cleanup(c.close)
	q := url.Values{"wall": {wallName}}.Encode()
	for range nWS {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws?"+q, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.ws = append(c.ws, ws)
	}
	for range nSSE {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?"+q, nil)
		resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("event stream: %v", err)
		}
		c.wg.Go(func() { io.Copy(io.Discard, resp.Body); resp.Body.Close() })
	}
	for range nPoll {
		tr := &http.Transport{} // a keep-alive connection per poller
		started := make(chan struct{})
		c.wg.Go(func() {
			defer tr.CloseIdleConnections()
			cursor := ""
			for first := true; ctx.Err() == nil; first = false {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
					base+"/a/message/updates?"+q+"&cursor="+url.QueryEscape(cursor), nil)
				if first {
					close(started)
				}
				resp, err := tr.RoundTrip(req)
				if err != nil {
					return
				}
				var r struct{ Cursor string }
				json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if r.Cursor != "" {
					cursor = r.Cursor
				}
			}
		})
		<-started
	}
	return c
}

// close ends every client: the instance sees each connection close.
func (c *instanceClients) close() {
	for _, ws := range c.ws {
		ws.Close()
	}
	c.ws = nil
	c.cancel()
	c.wg.Wait()
}

// stats reads GET /api/walls/<name> from base.
func stats(t *testing.T, base, name string) (st struct {
	Clients   presence.Counts
	Instances int
	LastSeq   uint64 `json:"last_seq"`
}) {
	t.Helper()
	resp, err := http.Get(base + "/api/walls/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stats: %d %v", resp.StatusCode, err)
	}
	return st
}

// converge waits until every base reports want clients of the wall over
// instances instances, and returns how long that took.
func converge(t *testing.T, bases []string, name string, want presence.Counts, instances int) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for {
		ok := true
		for _, b := range bases {
			st := stats(t, b, name)
			ok = ok && st.Clients == want && st.Instances == instances
		}
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			for _, b := range bases {
				t.Logf("%s: %+v", b, stats(t, b, name))
			}
			t.Fatalf("clients of %s not %+v over %d instances within 10s", name, want, instances)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPresenceTwoInstances: WebSocket, event-stream and long-poll clients
// of one wall spread over two instances sharing a Redis. Both instances'
// /api/walls/<wall> converge on the sum within a few seconds, drop the
// clients of one instance within a few seconds of their leaving, and
// count one instance as soon as the other shuts down. The admin page
// lists both instances.
func TestPresenceTwoInstances(t *testing.T) {
	rs := redistest.Start(t)
	args := []string{"-redis", rs.URL(), "-poll-timeout", "5s", "-admin-token", "adm"}
	a, _ := startRun(t, args...)
	b, stopB := startRun(t, args...)
	bases := []string{a, b}

	connectClients(t, a, "lobby", 2, 1, 1)
	onB := connectClients(t, b, "lobby", 1, 2, 3)
	d := converge(t, bases, "lobby", presence.Counts{WebSocket: 3, SSE: 3, LongPoll: 4}, 2)
	t.Logf("counts of both instances on both within %v", d)
	if d > 4*time.Second {
		t.Errorf("converged after %v: staler than the report interval and snapshot age allow", d)
	}

	req, _ := http.NewRequest(http.MethodGet, a+"/admin", nil)
	req.SetBasicAuth("ops", "adm")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(bufio.NewReader(resp.Body))
	resp.Body.Close()
	hostB := strings.TrimPrefix(b, "http://")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "<td>"+hostB+"</td>") ||
		!strings.Contains(string(page), "<td>lobby</td>") {
		t.Fatalf("admin page %d:\n%s", resp.StatusCode, page)
	}

	onB.close()
	d = converge(t, bases, "lobby", presence.Counts{WebSocket: 2, SSE: 1, LongPoll: 1}, 2)
	t.Logf("clients that left B gone from both within %v", d)
	if d > 4*time.Second {
		t.Errorf("left clients counted for %v", d)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	d = converge(t, bases[:1], "lobby", presence.Counts{WebSocket: 2, SSE: 1, LongPoll: 1}, 1)
	t.Logf("B shut down: A counts one instance within %v", d)
}
